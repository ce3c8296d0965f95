//! Rewrites `capi/include/res2net.h` from the sources.

use std::process::ExitCode;

fn main() -> ExitCode {
    let path = res2net_capi_header::header_path();
    match res2net_capi_header::generate().and_then(|h| {
        std::fs::write(&path, h).map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
