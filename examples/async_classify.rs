//! Async use: the GPU work is awaited instead of blocking, so the caller's executor thread stays free
//! while the forward pass runs. Here two batches are in flight at once on one thread.
//!
//! `cargo run --release --example async_classify`

use res2net_wgpu::bundled;
use res2net_wgpu::classifier::{Classifier, DeviceChoice};

fn main() -> Result<(), res2net_wgpu::Error> {
    let classifier = Classifier::new(bundled::model()?, DeviceChoice::Gpu)?;
    let heldout = bundled::heldout()?;
    let [h, w] = classifier.preprocess().input_size;
    let images = heldout.images();
    let first = classifier.to_tensor(&images[..8]);
    let second = classifier.to_tensor(&images[8..16]);

    let (a, b) = pollster::block_on(async {
        let a = classifier.run_tensor_async(&first, 8, h, w);
        let b = classifier.run_tensor_async(&second, 8, h, w);
        futures_join(a, b).await
    });
    for (batch, out) in [a?, b?].iter().enumerate() {
        let labels: Vec<String> = classifier
            .top_k(out, 1)
            .iter()
            .map(|p| p[0].label.clone())
            .collect();
        println!("batch {batch}: {}", labels.join(" "));
    }
    Ok(())
}

/// Polls two futures until both are done (a minimal `join`, to need no async runtime crate).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let mut ra = None;
    let mut rb = None;
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    match (ra, rb) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("both futures completed"),
    }
}
