//! The values that travel between the program and its distributed functions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One paragraph of the corpus, numbered from 1.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Chunk {
    pub index: usize,
    pub text: String,
}

/// A word and how often it occurs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WordCount {
    pub word: String,
    pub count: u32,
}

/// What `analysis::stats::chunk_stats` found in one chunk.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ChunkStats {
    pub index: usize,
    pub words: usize,
    pub sentences: usize,
    pub letters: usize,
    pub longest: String,
    /// Normalized words in alphabetical order.
    pub counts: Vec<WordCount>,
}

/// Why a chunk could not be analysed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AnalysisError {
    NoWords { chunk: usize },
}

impl fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalysisError::NoWords { chunk } => write!(f, "chunk {chunk} has no words"),
        }
    }
}

impl std::error::Error for AnalysisError {}

/// How hard a chunk is to read.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub enum Readability {
    Light,
    Moderate,
    Dense,
}

/// The result of `analysis::readability`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Assessment {
    pub chunk: usize,
    pub words_per_sentence: f64,
    pub letters_per_word: f64,
    pub level: Readability,
}

/// All analysed chunks together.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    pub chunks: usize,
    pub words: usize,
    pub sentences: usize,
    pub letters: usize,
    pub longest: String,
    /// Normalized words in alphabetical order.
    pub counts: Vec<WordCount>,
}

/// Which words `report::top_words` ranks.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TopQuery {
    pub limit: usize,
    pub min_letters: usize,
}
