//! Per-chunk statistics, with Unicode word and sentence boundaries from the
//! `unicode-segmentation` crate.

use std::collections::BTreeMap;

use unicode_segmentation::UnicodeSegmentation;

use crate::model::{AnalysisError, Chunk, ChunkStats, WordCount};

/// Counts the words, sentences and letters of `chunk`, and how often each word occurs.
/// A chunk with no words at all (a section break such as `* * *`) is an error.
#[turbolift::distribute]
pub fn chunk_stats(chunk: Chunk) -> Result<ChunkStats, AnalysisError> {
    let words: Vec<String> = chunk
        .text
        .unicode_words()
        .map(crate::text::normalize)
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err(AnalysisError::NoWords { chunk: chunk.index });
    }
    let sentences = chunk
        .text
        .unicode_sentences()
        .filter(|s| !s.trim().is_empty())
        .count();
    let letters = words.iter().map(|w| w.chars().count()).sum();
    let mut longest = String::new();
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for word in &words {
        if is_longer(word, &longest) {
            longest.clone_from(word);
        }
        *counts.entry(word.as_str()).or_insert(0) += 1;
    }
    let counts = counts
        .into_iter()
        .map(|(word, count)| WordCount {
            word: word.to_owned(),
            count,
        })
        .collect();
    Ok(ChunkStats {
        index: chunk.index,
        words: words.len(),
        sentences,
        letters,
        longest,
        counts,
    })
}

/// Whether `a` should replace `b` as the longest word: more characters, or as many and
/// earlier in the alphabet, so that the choice does not depend on the order of the text.
pub fn is_longer(a: &str, b: &str) -> bool {
    let (la, lb) = (a.chars().count(), b.chars().count());
    la > lb || (la == lb && a < b)
}
