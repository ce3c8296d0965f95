// Weights then biases, packed on the host in the kernel family's layout (binding 1). With F16_WEIGHTS
// they are stored as f16 (the shader file enables f16 first) and every read converts them to f32, so
// all products and sums stay f32. WEIGHTS_VEC4 reads them as vec4s.
#ifdef F16_WEIGHTS
alias wscalar = f16;
#else
alias wscalar = f32;
#endif
#ifdef WEIGHTS_VEC4
@group(0) @binding(1) var<storage, read> wts: array<vec4<wscalar>>;
#else
@group(0) @binding(1) var<storage, read> wts: array<wscalar>;
#endif
