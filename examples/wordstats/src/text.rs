//! Text helpers, used both by distributed functions and by ordinary code.

use crate::model::Chunk;

/// Lowercases `word` and keeps only its letters and digits, so that `Dog`, `DOG` and
/// `dog,` all count as `dog`.
pub fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Splits `text` into paragraphs at blank lines, numbering them from 1. The lines of a
/// paragraph are joined with spaces: a line break is not the end of a sentence.
pub fn paragraphs(text: &str) -> Vec<Chunk> {
    text.split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(i, p)| Chunk {
            index: i + 1,
            text: p,
        })
        .collect()
}
