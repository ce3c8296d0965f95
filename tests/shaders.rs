//! Every WGSL shader, in every variant the runtime can create, parses, validates with the capabilities
//! the runtime enables (WebGPU's baseline, plus subgroups for the shaders that call them), and
//! translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL ES 3.10 (OpenGL ES / WebGL-class
//! GL). A shader that only breaks on one backend fails here, on any machine, without a GPU.
//!
//! The f16-weight variants (`enable f16;`, generated from the f32 files) validate with the f16
//! capability and translate to SPIR-V, MSL and HLSL (shader model 6.2, the first with 16-bit types).
//! GLSL is skipped for them, explicitly: naga's GLSL writer has no f16, and wgpu never offers
//! `SHADER_F16` on its GL backend, so the runtime never creates them there.

use std::collections::BTreeSet;
use std::path::Path;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use res2net_wgpu::gpu::kernels::{all_variants, KernelKey, Shader};

/// Shaders that call subgroup builtins: the runtime only creates them where the device has
/// `Features::SUBGROUP` (with 8-lane subgroups), so they validate with that capability; they still
/// translate to every backend.
fn uses_subgroups(name: &str) -> bool {
    Shader::ALL
        .iter()
        .any(|s| s.file_name() == name && s.needs_subgroups())
}

fn parse_source(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let mut caps = if uses_subgroups(name) {
        Capabilities::SUBGROUP
    } else {
        Capabilities::empty()
    };
    if uses_f16(source) {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

/// Whether a source enables f16 (the generated f16-weight variants).
fn uses_f16(source: &str) -> bool {
    source.starts_with("enable f16;")
}

fn parse(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    parse_source(shader.file_name(), shader.source())
}

/// Every `.wgsl` file in `shaders/`, with its contents.
fn shader_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("shaders/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let source = std::fs::read_to_string(&p).expect("shader file");
            (name, source)
        })
        .collect();
    files.sort();
    files
}

/// Specialises one variant and writes it with all four backends.
fn translate(key: &KernelKey) {
    let (module, info) = parse(key.shader);
    let constants: Vec<(&str, f64)> = key
        .constants
        .iter()
        .map(|(k, v)| (*k, f64::from(*v)))
        .collect();
    translate_module(
        &key.label(),
        &module,
        &info,
        key.entry,
        &constants,
        key.shader.needs_f16(),
    );
}

fn translate_module(
    label: &str,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    overrides: &[(&str, f64)],
    f16: bool,
) {
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in overrides {
        constants.insert((*name).to_string(), *value);
    }
    let ep = (naga::ShaderStage::Compute, entry);
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(module, info, Some(ep), &constants)
            .unwrap_or_else(|e| panic!("{label}: overrides: {e}"));
    assert!(
        module.entry_points.iter().any(|e| e.name == entry),
        "{label}: no entry point {entry}"
    );

    spv::write_vec(
        &module,
        &info,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_string(),
        }),
    )
    .unwrap_or_else(|e| panic!("{label}: SPIR-V: {e}"));

    msl::write_string(
        &module,
        &info,
        &msl::Options {
            lang_version: (2, 1),
            ..Default::default()
        },
        &msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));

    let hlsl_options = hlsl::Options {
        // 16-bit types need shader model 6.2.
        shader_model: if f16 {
            hlsl::ShaderModel::V6_2
        } else {
            hlsl::Options::default().shader_model
        },
        ..Default::default()
    };
    let hlsl_pipeline = hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
    };
    let mut hlsl_out = String::new();
    hlsl::Writer::new(&mut hlsl_out, &hlsl_options, &hlsl_pipeline)
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{label}: HLSL: {e}"));

    if f16 {
        // Skipped on purpose: no f16 in naga's GLSL writer, no SHADER_F16 on wgpu's GL backend.
        return;
    }

    let mut glsl_out = String::new();
    let glsl_options = glsl::Options {
        version: glsl::Version::new_gles(310),
        ..Default::default()
    };
    let glsl_pipeline = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    glsl::Writer::new(
        &mut glsl_out,
        &module,
        &info,
        &glsl_options,
        &glsl_pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .unwrap_or_else(|e| panic!("{label}: GLSL: {e}"));
}

#[test]
fn runtime_shaders_are_the_files_in_shaders_dir() {
    let files = shader_files();
    for s in Shader::ALL {
        let file = files
            .iter()
            .find(|(name, _)| name == s.file_name())
            .unwrap_or_else(|| panic!("{} is not in shaders/", s.file_name()));
        assert_eq!(
            file.1,
            s.base().source(),
            "{} is compiled in from shaders/",
            s.file_name()
        );
        if s.needs_f16() {
            // Generated: the same kernel with `enable f16;` and f16 weight storage.
            assert!(uses_f16(s.source()), "{}", s.name());
            let generated: Vec<&str> = s.source().lines().skip(1).collect();
            let original: Vec<&str> = file.1.lines().collect();
            assert_eq!(generated.len(), original.len(), "{}", s.name());
            let changed: Vec<(&&str, &&str)> = generated
                .iter()
                .zip(&original)
                .filter(|(a, b)| a != b)
                .collect();
            assert!(
                changed.len() == 1 && changed[0].0.contains("var<storage, read> wts: array<"),
                "{} differs from {} only in its weights' type: {changed:?}",
                s.name(),
                s.file_name()
            );
        }
    }
}

#[test]
fn every_shader_file_validates_and_translates_with_default_overrides() {
    let files = shader_files();
    let file_backed = Shader::ALL.iter().filter(|s| !s.needs_f16()).count();
    assert!(files.len() >= file_backed);
    for (name, source) in &files {
        let (module, info) = parse_source(name, source);
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        for ep in &module.entry_points {
            translate_module(
                &format!("{name}:{}", ep.name),
                &module,
                &info,
                &ep.name,
                &[],
                false,
            );
        }
    }
}

#[test]
fn every_runtime_variant_translates_to_spirv_msl_hlsl_and_glsl() {
    let variants = all_variants();
    // Every runtime shader is used by at least one variant.
    let used: BTreeSet<Shader> = variants.iter().map(|k| k.shader).collect();
    assert_eq!(used.len(), Shader::ALL.len());
    for key in &variants {
        translate(key);
    }
}
