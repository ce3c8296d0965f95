//! Embedding in an application that already owns a wgpu device (a renderer, a game engine): the
//! classifier is built on the caller's `Device` and `Queue` instead of opening its own.
//!
//! `cargo run --release --example embed_existing_device -- weights/samples/digit_7.png`

use res2net_wgpu::classifier::Classifier;
use res2net_wgpu::gpu::GpuContext;
use res2net_wgpu::{bundled, preprocess};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's own device, created however it likes.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("app device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;

    // The classifier shares it; the application keeps using the device for its own work.
    let classifier = Classifier::with_context(
        bundled::model()?,
        GpuContext::from_device(device.clone(), queue.clone()),
    )?;
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "weights/samples/digit_7.png".into());
    let image = preprocess::load_image(path.as_ref())?;
    for p in &classifier.classify(&[image], 3)?[0] {
        println!("{:>6.2}%  {}", p.prob * 100.0, p.label);
    }
    println!("on {}", classifier.device_name());
    Ok(())
}
