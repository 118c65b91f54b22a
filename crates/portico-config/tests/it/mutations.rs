//! Fuzz-ish: bounded random byte mutations of the example files never panic, and every
//! diagnostic they produce has a position inside the file.

use crate::support::{crate_path, example_files};

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that tend to reach interesting paths of the TOML grammar and of our checks.
const INTERESTING: &[u8] = b"[]{}=\",.:/*-_#'\n 0123456789abcdefghijklmnopqrstuvwxyz\\\t";

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut out = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 if at < out.len() => {
                out.remove(at);
            }
            2 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            _ => {
                // Duplicate a random slice (repeats keys and tables).
                let end = (at + rng.below(40)).min(out.len());
                let piece = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
        }
    }
    out
}

#[test]
fn mutated_examples_never_panic() {
    let mut files = example_files();
    files.push(crate_path("tests/data/everything.toml"));
    assert!(!files.is_empty());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut invalid = 0;
    for path in &files {
        let src = std::fs::read(path).unwrap();
        for _ in 0..600 {
            let bytes = mutate(&mut rng, &src);
            let text = String::from_utf8_lossy(&bytes);
            let lines = text.lines().count() + 1;
            if let Err(e) = portico_config::parse(&text, path) {
                invalid += 1;
                for d in e.diagnostics() {
                    assert!(
                        d.line >= 1 && d.line <= lines,
                        "{d} (file has {lines} lines)"
                    );
                    assert!(d.col >= 1);
                    assert!(!d.message.is_empty() && !d.message.contains('\n'), "{d}");
                }
            }
        }
    }
    // The mutations must actually exercise the error paths.
    assert!(
        invalid > files.len() * 200,
        "only {invalid} mutated files were invalid"
    );
}
