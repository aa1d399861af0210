//! Compiles the XDP steering program (deploy/xdp/steer.bpf.c) with clang
//! when the `afxdp` feature is on; `io::afxdp` embeds the object.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    if std::env::var_os("CARGO_FEATURE_AFXDP").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let source = manifest.join("../deploy/xdp/steer.bpf.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("steer.bpf.o");
    println!("cargo:rerun-if-changed={}", source.display());
    let clang = std::env::var("BPF_CLANG").unwrap_or_else(|_| "clang".to_owned());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`{clang}` could not compile {} ({s})",
            source.display()
        )),
        Err(e) => fail(&format!(
            "could not run `{clang}` ({e}): the `afxdp` feature compiles the XDP \
             steering program with clang; install it (`apt-get install clang llvm`, \
             deploy/setup.sh does) or build with `--no-default-features`"
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
