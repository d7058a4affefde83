//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fedcredit/v1/common.proto",
        "proto/fedcredit/v1/secagg.proto",
        "proto/fedcredit/v1/horizontal.proto",
        "proto/fedcredit/v1/psi.proto",
        "proto/fedcredit/v1/woe.proto",
        "proto/fedcredit/v1/lr.proto",
        "proto/fedcredit/v1/secureboost.proto",
        "proto/fedcredit/v1/vertical.proto",
        "proto/fedcredit/v1/job.proto",
        "proto/fedcredit/v1/federation.proto",
        "proto/fedcredit/v1/control.proto",
        "proto/fedcredit/v1/scoring.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
