//! Every WGSL shader, in every variant the runtime can create, preprocesses, parses, validates with
//! the capabilities the runtime enables (WebGPU's baseline, plus subgroups for the shaders that call
//! them and f16 for f16 weights), and translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and
//! GLSL ES 3.10 (OpenGL ES / WebGL-class GL). A shader that only breaks on one backend fails here, on
//! any machine, without a GPU. The uniform structs are reflected from the shaders and compared with
//! their Rust twins field by field.
//!
//! The f16-weight variants validate with the f16 capability and translate to SPIR-V, MSL and HLSL
//! (shader model 6.2, the first with 16-bit types). GLSL is skipped for them, explicitly: naga's GLSL
//! writer has no f16, and wgpu never offers `SHADER_F16` on its GL backend, so the runtime never
//! creates them there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use rayon::prelude::*;
use res2net_wgpu::gpu::kernels::{all_variants, KernelKey, ShaderFile, ShaderKey, LIBRARY};
use res2net_wgpu::gpu::uniforms;

fn parse_key(shader: &ShaderKey) -> (naga::Module, naga::valid::ModuleInfo) {
    let name = shader.name();
    let source = shader.source().unwrap_or_else(|e| panic!("{name}: {e}"));
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
    let mut caps = Capabilities::empty();
    if shader.needs_subgroups() {
        caps |= Capabilities::SUBGROUP;
    }
    if shader.needs_f16() {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
    (module, info)
}

/// Every `.wgsl` file in `dir`, with its contents.
fn wgsl_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("shader directory")
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

fn shaders_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

/// Specialises each variant of one shader module (parsed once) and writes it with all four
/// backends.
fn translate(shader: &ShaderKey, variants: &[&KernelKey]) {
    let (module, info) = parse_key(shader);
    for key in variants {
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
            shader.needs_f16(),
        );
    }
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
    let files = wgsl_files(&shaders_dir());
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let known: BTreeSet<&str> = ShaderFile::ALL.iter().map(|s| s.file_name()).collect();
    assert_eq!(names, known, "shaders/*.wgsl and ShaderFile::ALL");
    for s in ShaderFile::ALL {
        let file = files.iter().find(|(n, _)| n == s.file_name());
        assert_eq!(
            file.map(|f| f.1.as_str()),
            Some(s.text()),
            "{}",
            s.file_name()
        );
    }
    let lib = wgsl_files(&shaders_dir().join("lib"));
    let lib_names: BTreeSet<String> = lib
        .iter()
        .map(|(n, _)| n.trim_end_matches(".wgsl").to_string())
        .collect();
    let known: BTreeSet<String> = LIBRARY.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(lib_names, known, "shaders/lib/*.wgsl and LIBRARY");
    for (name, text) in LIBRARY {
        let file = lib
            .iter()
            .find(|(n, _)| n.trim_end_matches(".wgsl") == name);
        assert_eq!(file.map(|f| f.1.as_str()), Some(text), "lib/{name}.wgsl");
    }
}

#[test]
fn uniform_structs_are_only_declared_in_rust() {
    for (name, text) in wgsl_files(&shaders_dir())
        .into_iter()
        .chain(wgsl_files(&shaders_dir().join("lib")))
    {
        for s in uniforms::all() {
            assert!(
                !text.contains(&format!("struct {} ", s.name)),
                "{name} declares {} itself instead of importing it",
                s.name
            );
        }
    }
}

#[test]
fn wgsl_uniform_structs_match_rust_layouts() {
    let mut seen = BTreeSet::new();
    for file in ShaderFile::ALL {
        let (module, _) = parse_key(&ShaderKey::new(file));
        for (_, ty) in module.types.iter() {
            let (Some(name), naga::TypeInner::Struct { members, span }) = (&ty.name, &ty.inner)
            else {
                continue;
            };
            let Some(rust) = uniforms::all().into_iter().find(|s| s.name == name) else {
                continue;
            };
            let names: Vec<&str> = members.iter().filter_map(|m| m.name.as_deref()).collect();
            assert_eq!(names, rust.fields, "{name} fields in {}", file.file_name());
            for (i, m) in members.iter().enumerate() {
                assert_eq!(m.offset as usize, 4 * i, "{name}.{:?} offset", m.name);
                assert!(
                    matches!(
                        module.types[m.ty].inner,
                        naga::TypeInner::Scalar(naga::Scalar { width: 4, .. })
                    ),
                    "{name}.{:?} is a 4-byte scalar",
                    m.name
                );
            }
            assert_eq!(*span as usize, rust.size, "{name} size");
            seen.insert(name.clone());
        }
    }
    let all: BTreeSet<String> = uniforms::all().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(seen, all, "every uniform struct is used by some shader");
}

#[test]
fn every_shader_file_validates_and_translates_with_default_overrides() {
    for file in ShaderFile::ALL {
        for f16 in [false, true] {
            let key = ShaderKey::new(file).with_f16_weights(f16);
            if f16 && !key.needs_f16() {
                continue;
            }
            let (module, info) = parse_key(&key);
            assert!(
                !module.entry_points.is_empty(),
                "{} has no entry point",
                key.name()
            );
            for ep in &module.entry_points {
                translate_module(
                    &format!("{}:{}", key.name(), ep.name),
                    &module,
                    &info,
                    &ep.name,
                    &[],
                    key.needs_f16(),
                );
            }
        }
    }
}

#[test]
fn every_runtime_variant_translates_to_spirv_msl_hlsl_and_glsl() {
    let variants = all_variants();
    // Every shader file is used by at least one variant.
    let used: BTreeSet<ShaderFile> = variants.iter().map(|k| k.shader.file).collect();
    assert_eq!(used.len(), ShaderFile::ALL.len());
    let unique: BTreeSet<&KernelKey> = variants.iter().collect();
    assert_eq!(unique.len(), variants.len(), "variants are listed once");
    let mut by_module: BTreeMap<&ShaderKey, Vec<&KernelKey>> = BTreeMap::new();
    for key in &variants {
        by_module.entry(&key.shader).or_default().push(key);
    }
    // Thousands of translations: the modules are shared out over the cores.
    by_module
        .into_par_iter()
        .for_each(|(shader, keys)| translate(shader, &keys));
}
