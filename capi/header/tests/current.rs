//! The committed header is what cbindgen makes from the sources now.

#[test]
fn committed_header_is_current() {
    let fresh = res2net_capi_header::generate().unwrap_or_else(|e| panic!("{e}"));
    let path = res2net_capi_header::header_path();
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with `cargo run -p res2net-capi-header` and commit it",
        path.display()
    );
}
