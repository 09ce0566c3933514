//! The smallest turbolift program: `square` runs as a service under `cargo turbolift run`,
//! and in-process under plain `cargo run`.

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[tokio::main]
async fn main() -> Result<(), turbolift::Error> {
    let calls: Vec<_> = (0..10u64).map(|u| tokio::spawn(square(u))).collect();
    let mut squares = Vec::with_capacity(calls.len());
    for call in calls {
        squares.push(call.await.expect("the call task does not panic")?);
    }
    println!("squares: {squares:?}");
    println!("sum: {}", squares.iter().sum::<u64>());

    // Many calls at once: `square_batch` packs them into a few requests spread over the
    // replicas, and gives the results back in input order.
    let many = square_batch(0..10_000u64).await?;
    println!("sum of 10,000 squares: {}", many.iter().sum::<u64>());
    Ok(())
}
