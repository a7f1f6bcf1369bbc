//! Embeds an rpath to libtorch so `target/*/dps-recon` and the tests run without
//! LD_LIBRARY_PATH, and keeps libtorch_cuda linked (the linker's --as-needed would
//! drop it, and then CUDA is never seen at run time).
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
