//! Ranking and printing. `top_words` is distributed; the printing stays in the caller.

use crate::model::{Assessment, ChunkStats, Summary, TopQuery, WordCount};

/// The `query.limit` most frequent words with at least `query.min_letters` letters, most
/// frequent first, ties in alphabetical order.
#[turbolift::distribute]
pub fn top_words(counts: Vec<WordCount>, query: TopQuery) -> Vec<WordCount> {
    let mut ranked: Vec<WordCount> = counts
        .into_iter()
        .filter(|wc| wc.word.chars().count() >= query.min_letters)
        .collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    ranked.truncate(query.limit);
    ranked
}

pub fn print_chunk(stats: &ChunkStats) {
    println!(
        "chunk {}: {} words, {} sentences, {} distinct, longest {:?}",
        stats.index,
        stats.words,
        stats.sentences,
        stats.counts.len(),
        stats.longest
    );
}

pub fn print_assessment(a: &Assessment) {
    println!(
        "chunk {}: {:.1} words per sentence, {:.2} letters per word: {:?}",
        a.chunk, a.words_per_sentence, a.letters_per_word, a.level
    );
}

pub fn print_summary(s: &Summary) {
    println!(
        "total: {} chunks, {} words ({} distinct), {} sentences, {} letters, longest {:?}",
        s.chunks,
        s.words,
        s.counts.len(),
        s.sentences,
        s.letters,
        s.longest
    );
}

pub fn print_top(query: &TopQuery, top: &[WordCount]) {
    println!(
        "top {} words of {}+ letters:",
        query.limit, query.min_letters
    );
    let widest = top.iter().map(|wc| wc.word.len()).max().unwrap_or(0);
    for wc in top {
        println!(
            "  {:<widest$} {:>3} {}",
            wc.word,
            wc.count,
            "#".repeat(wc.count as usize)
        );
    }
}

/// Looks `word` up in the merged counts, normalized the same way `chunk_stats` normalized
/// the text.
pub fn print_lookup(summary: &Summary, word: &str) {
    let key = crate::text::normalize(word);
    let count = summary
        .counts
        .binary_search_by(|wc| wc.word.as_str().cmp(&key))
        .map_or(0, |i| summary.counts[i].count);
    println!("lookup {word:?} -> {key:?}: {count}");
}
