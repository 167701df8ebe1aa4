//! The native side of the web client's cost comparison (scripts/wasm-test runs it beside the
//! browser's `send_receive_cost` test, against the same server): what sending and receiving
//! one message costs the native client.
//!
//! `cargo run -p parley-client --features test-hooks --example send_receive_cost -- URL [N]`

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().ok_or("give the server's URL")?;
    let messages: u32 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(50);
    let root = tempfile::tempdir()?;
    let suffix = std::process::id();
    let cost = parley_client::testing::send_receive_cost(
        &server,
        root.path(),
        &format!("nsend{suffix}"),
        &format!("nrecv{suffix}"),
        messages,
    )
    .await?;
    println!(
        "native send_receive_cost: send {:.2} ms, receive {:.2} ms per message ({messages} messages)",
        cost.send_ms, cost.receive_ms
    );
    Ok(())
}
