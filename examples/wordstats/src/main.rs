//! Word statistics for a short story. Each paragraph is analysed by a distributed
//! function, concurrently; the results are merged and ranked by two more, and the report
//! is printed here. Under `cargo turbolift run` every distributed function runs as its own
//! service; under plain `cargo run` they run in this process. The output is the same.

mod analysis;
mod model;
mod report;
mod text;

use model::{ChunkStats, TopQuery};

/// The story, compiled into the binary.
const CORPUS: &str = include_str!("../data/corpus.txt");

/// Words to look up in the merged counts, spelled the way a user might type them.
const LOOKUPS: [&str; 4] = ["Dog", "KEEPER", "lamp", "whale"];

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("wordstats: {e}");
        std::process::exit(1);
    }
    println!("done");
}

async fn run() -> Result<(), turbolift::Error> {
    let chunks = text::paragraphs(CORPUS);
    println!(
        "corpus: {} lines in {} chunks",
        CORPUS.lines().count(),
        chunks.len()
    );

    // One call per chunk, all in flight at once. A chunk without words (the `* * *`
    // section break) comes back as `Ok(Err(AnalysisError::NoWords { .. }))`.
    let results =
        futures::future::try_join_all(chunks.into_iter().map(analysis::stats::chunk_stats)).await?;
    let mut analysed: Vec<ChunkStats> = Vec::new();
    for result in results {
        match result {
            Ok(stats) => {
                report::print_chunk(&stats);
                analysed.push(stats);
            }
            Err(e) => println!("{e}: skipped"),
        }
    }

    // Readability of each analysed chunk, on spawned tasks.
    let tasks: Vec<_> = analysed
        .iter()
        .cloned()
        .map(|stats| tokio::spawn(analysis::readability(stats)))
        .collect();
    for task in tasks {
        let assessment = task.await.expect("the readability task does not panic")?;
        report::print_assessment(&assessment);
    }

    let summary = analysis::merge(analysed).await?;
    report::print_summary(&summary);

    let query = TopQuery {
        limit: 8,
        min_letters: 4,
    };
    let top = report::top_words(summary.counts.clone(), query.clone()).await?;
    report::print_top(&query, &top);

    for word in LOOKUPS {
        report::print_lookup(&summary, word);
    }
    Ok(())
}
