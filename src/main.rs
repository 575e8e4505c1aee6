//! The `custodian` binary: everything lives in the library; see `cli`.

#[tokio::main]
async fn main() {
    let code = custodian::cli::run().await;
    std::process::exit(code);
}
