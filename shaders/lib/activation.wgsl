// The activation applied to a result before it is stored: ACT is one of the ACT_* codes (generated
// from the Rust `Activation` enum).
#import activation_codes

override ACT: u32 = ACT_NONE;

fn activate(v: f32) -> f32 {
    if (ACT == ACT_RELU) {
        return max(v, 0.0);
    }
    if (ACT == ACT_SIGMOID) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

fn activate4(v: vec4<f32>) -> vec4<f32> {
    if (ACT == ACT_RELU) {
        return max(v, vec4<f32>(0.0));
    }
    if (ACT == ACT_SIGMOID) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}
