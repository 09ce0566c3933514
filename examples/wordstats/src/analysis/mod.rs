//! Analyses built on the per-chunk statistics of [`stats`].

pub mod stats;

use std::collections::BTreeMap;

use crate::model::{Assessment, ChunkStats, Readability, Summary, WordCount};

/// How readable a chunk is, from its sentence length and word length.
#[turbolift::distribute]
pub fn readability(stats: ChunkStats) -> Assessment {
    let words_per_sentence = stats.words as f64 / stats.sentences.max(1) as f64;
    let letters_per_word = stats.letters as f64 / stats.words.max(1) as f64;
    let score = words_per_sentence + 2.0 * letters_per_word;
    let level = if score < 20.0 {
        Readability::Light
    } else if score < 26.0 {
        Readability::Moderate
    } else {
        Readability::Dense
    };
    Assessment {
        chunk: stats.index,
        words_per_sentence,
        letters_per_word,
        level,
    }
}

/// Adds up the statistics of several chunks. An `async` body that yields between chunks.
#[turbolift::distribute]
pub async fn merge(parts: Vec<ChunkStats>) -> Summary {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut summary = Summary {
        chunks: parts.len(),
        words: 0,
        sentences: 0,
        letters: 0,
        longest: String::new(),
        counts: Vec::new(),
    };
    for part in parts {
        tokio::task::yield_now().await;
        summary.words += part.words;
        summary.sentences += part.sentences;
        summary.letters += part.letters;
        if stats::is_longer(&part.longest, &summary.longest) {
            summary.longest = part.longest;
        }
        for wc in part.counts {
            *counts.entry(wc.word).or_insert(0) += wc.count;
        }
    }
    summary.counts = counts
        .into_iter()
        .map(|(word, count)| WordCount { word, count })
        .collect();
    summary
}
