//! Turning ticket text into hashed features.
//!
//! Customers write Chinese without spaces, English with typos, and both in
//! one sentence. The text is normalised (full-width ASCII folded, lower
//! case, every digit becomes `0`) and then split into runs:
//!
//! - a CJK run gives character 1-, 2- and 3-grams (no word segmenter: n-grams
//!   are robust to new words and need no dictionary);
//! - a word run (letters and digits) gives the word, the bigram with the
//!   previous word, and character 3-grams of `<word>` so `paymnet` still
//!   shares most features with `payment`.
//!
//! Features are hashed straight into a fixed table of [`DIM`] buckets: no
//! vocabulary, no allocation per n-gram, and the same code path for training
//! and for suggesting.

use std::cell::RefCell;

/// log2 of the number of hash buckets.
pub(crate) const BITS: u32 = 18;
/// Number of hash buckets (rows of the weight table).
pub(crate) const DIM: usize = 1 << BITS;

/// What a feature is made of; part of its hash and of its explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Cjk1 = 1,
    Cjk2,
    Cjk3,
    Word,
    WordPair,
    CharGram,
    /// Bias per reply language, so Chinese and English get their own priors.
    Lang,
    /// A playbook's triggers matched (value = summed weight).
    Rule,
    /// One of a playbook's precise phrases matched.
    Phrase,
    /// A built-in field (amount, foreign country, ...) was extracted.
    Field,
}

impl Kind {
    /// Whether a feature of this kind is worth showing in an explanation.
    pub(crate) fn explains(self) -> bool {
        !matches!(self, Kind::Cjk1 | Kind::CharGram)
    }

    /// Relative weight of the feature family before normalisation.
    fn weight(self) -> f32 {
        match self {
            Kind::Cjk1 => 1.0,
            Kind::Cjk2 => 1.0,
            Kind::Cjk3 => 1.0,
            Kind::Word => 1.0,
            Kind::WordPair => 0.8,
            Kind::CharGram => 0.5,
            Kind::Lang | Kind::Rule | Kind::Phrase | Kind::Field => 1.0,
        }
    }
}

/// Where a feature came from, as char ranges into the normalised text, so an
/// explanation can show it without the hot path building strings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) kind: Kind,
    /// First range (the n-gram, or the first word of a pair).
    pub(crate) a: (u32, u32),
    /// Second word of a pair; for a char gram, whether it touches the word
    /// start (1) and end (2) so `<pa` can be shown with its marker.
    pub(crate) b: (u32, u32),
}

/// A hashed feature: bucket and value.
pub(crate) type Feature = (u32, f32);

/// Mixes one value into a running hash (FxHash-style).
#[inline]
fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// Final avalanche and reduction to a bucket.
#[inline]
pub(crate) fn bucket(h: u64) -> u32 {
    let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = h ^ (h >> 32);
    (h >> (64 - BITS)) as u32
}

/// Bucket of a synthetic feature (language bias, rule hits) for class `n`.
pub(crate) fn synthetic(kind: Kind, n: u64) -> u32 {
    bucket(mix(mix(0x9e37_79b9, kind as u64), n))
}

/// True for characters written without spaces between words.
#[inline]
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F
        | 0x3040..=0x30FF | 0xAC00..=0xD7AF)
}

/// Folds full-width ASCII, lower-cases and maps digits to `0`.
#[inline]
pub(crate) fn normalize(c: char) -> char {
    let c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    if c.is_ascii() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_digit() { '0' } else { c }
    } else if c.is_alphabetic() && !is_cjk(c) {
        c.to_lowercase().next().unwrap_or(c)
    } else if c.is_numeric() {
        '0'
    } else {
        c
    }
}

/// Reusable per-thread buffers, so suggesting allocates nothing per n-gram.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The normalised text.
    pub(crate) chars: Vec<char>,
    /// Raw (bucket, value) pairs before merging duplicates.
    pub(crate) feats: Vec<Feature>,
    /// Bucket and origin of every n-gram, for explanations.
    pub(crate) origins: Vec<(u32, Origin)>,
    /// Merges repeated n-grams.
    pub(crate) dedup: Dedup,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Re-entrant use (not expected): fall back to fresh buffers.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Calls `emit` for every n-gram feature of the normalised `chars`, with its
/// hash and where it came from.
pub(crate) fn for_each_ngram(chars: &[char], mut emit: impl FnMut(u64, Origin)) {
    let n = chars.len();
    let mut i = 0;
    // The previous word, for word pairs; reset by CJK runs and punctuation.
    let mut prev: Option<(u32, u32, u64)> = None;
    while i < n {
        let c = chars[i];
        if is_cjk(c) {
            let start = i;
            while i < n && is_cjk(chars[i]) {
                i += 1;
            }
            for s in start..i {
                let mut h = mix(0, Kind::Cjk1 as u64);
                for (len, kind) in [(1, Kind::Cjk1), (2, Kind::Cjk2), (3, Kind::Cjk3)] {
                    if s + len > i {
                        break;
                    }
                    h = mix(h, chars[s + len - 1] as u64);
                    let o = Origin {
                        kind,
                        a: (s as u32, (s + len) as u32),
                        b: (0, 0),
                    };
                    emit(mix(h, kind as u64), o);
                }
            }
            prev = None;
        } else if c.is_alphanumeric() {
            let start = i;
            let mut h = mix(0, Kind::Word as u64);
            while i < n && chars[i].is_alphanumeric() && !is_cjk(chars[i]) {
                h = mix(h, chars[i] as u64);
                i += 1;
            }
            let (s, e) = (start as u32, i as u32);
            emit(
                h,
                Origin {
                    kind: Kind::Word,
                    a: (s, e),
                    b: (0, 0),
                },
            );
            if let Some((ps, pe, ph)) = prev {
                let o = Origin {
                    kind: Kind::WordPair,
                    a: (ps, pe),
                    b: (s, e),
                };
                emit(mix(mix(ph, 0x2f), h), o);
            }
            prev = Some((s, e, h));
            // Char 3-grams of `<word>`, skipping pure numbers and short words.
            let len = i - start;
            if len >= 3 && !chars[start..i].iter().all(|&c| c == '0') {
                // Positions -1 and len stand for the `<` and `>` markers.
                for g in -1..(len as isize - 1) {
                    let mut h = mix(0, Kind::CharGram as u64);
                    for p in g..g + 3 {
                        let ch = if p < 0 {
                            '<'
                        } else if p as usize >= len {
                            '>'
                        } else {
                            chars[start + p as usize]
                        };
                        h = mix(h, ch as u64);
                    }
                    let a0 = (start as isize + g.max(0)) as u32;
                    let a1 = (start as isize + (g + 3).min(len as isize)) as u32;
                    let marks = u32::from(g < 0) | (u32::from(g + 3 > len as isize) << 1);
                    emit(
                        h,
                        Origin {
                            kind: Kind::CharGram,
                            a: (a0, a1),
                            b: (marks, 0),
                        },
                    );
                }
            }
        } else {
            if !matches!(c, ' ' | '\'' | '-' | '’') {
                prev = None;
            }
            i += 1;
        }
    }
}

/// Normalises `text` into `chars`.
pub(crate) fn normalize_into(text: &str, chars: &mut Vec<char>) {
    chars.clear();
    chars.extend(text.chars().map(normalize));
}

/// Merges repeated buckets without sorting: a small open-addressing table
/// from bucket to position in the output, cleared after each text by
/// undoing only the slots it used.
#[derive(Debug)]
pub(crate) struct Dedup {
    /// `bucket + 1` (0 = empty) and the feature's index in the output.
    slots: Vec<(u32, u32)>,
    /// Slots to clear after the current text.
    used: Vec<usize>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            slots: vec![(0, 0); DEDUP_SLOTS],
            used: Vec::new(),
        }
    }
}

/// Table size; texts with more distinct n-grams than half of it are
/// merged by sorting instead.
const DEDUP_SLOTS: usize = 4096;

impl Dedup {
    /// Adds feature `(b, v)` to `out`, keeping the larger value of a
    /// repeated bucket (presence, not counts: repetition is not evidence).
    #[inline]
    fn add(&mut self, out: &mut Vec<Feature>, b: u32, v: f32) {
        if self.used.len() >= DEDUP_SLOTS / 2 {
            out.push((b, v));
            return;
        }
        let mask = DEDUP_SLOTS - 1;
        let mut i = (b.wrapping_mul(0x9E37_79B9) >> 20) as usize & mask;
        loop {
            let (key, idx) = self.slots[i];
            if key == 0 {
                self.slots[i] = (b + 1, out.len() as u32);
                self.used.push(i);
                out.push((b, v));
                return;
            }
            if key == b + 1 {
                let f = &mut out[idx as usize];
                f.1 = f.1.max(v);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Clears the table; merges by sorting if the table overflowed.
    fn finish(&mut self, out: &mut Vec<Feature>) {
        let overflowed = self.used.len() >= DEDUP_SLOTS / 2;
        for &i in &self.used {
            self.slots[i] = (0, 0);
        }
        self.used.clear();
        if overflowed {
            out.sort_unstable_by_key(|f| f.0);
            out.dedup_by(|a, b| {
                let same = a.0 == b.0;
                if same {
                    b.1 = b.1.max(a.1);
                }
                same
            });
        }
        normalize_l2(out);
    }
}

/// Builds the sparse, L2-normalised n-gram vector of `chars` into `out`
/// (each bucket once), replacing its contents.
pub(crate) fn vectorize(chars: &[char], out: &mut Vec<Feature>, dedup: &mut Dedup) {
    out.clear();
    for_each_ngram(chars, |h, o| dedup.add(out, bucket(h), o.kind.weight()));
    dedup.finish(out);
}

/// [`vectorize`] that also records the origin of every n-gram an
/// explanation may show (words, word pairs, Chinese 2- and 3-grams; not
/// single characters or sub-word grams, which explain little), without a
/// second pass.
pub(crate) fn vectorize_with_origins(
    chars: &[char],
    out: &mut Vec<Feature>,
    origins: &mut Vec<(u32, Origin)>,
    dedup: &mut Dedup,
) {
    out.clear();
    origins.clear();
    for_each_ngram(chars, |h, o| {
        let b = bucket(h);
        dedup.add(out, b, o.kind.weight());
        if o.kind.explains() {
            origins.push((b, o));
        }
    });
    dedup.finish(out);
}

/// Scales the vector to unit length.
fn normalize_l2(out: &mut [Feature]) {
    let norm = out.iter().map(|f| f.1 * f.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        let inv = 1.0 / norm;
        for f in out.iter_mut() {
            f.1 *= inv;
        }
    }
}

/// Renders a feature's origin for humans, e.g. `“退款”` or `“refund status”`.
#[cfg(test)]
pub(crate) fn describe(chars: &[char], o: &Origin) -> String {
    let mut out = String::new();
    describe_into(chars, o, &mut out);
    out
}

/// How an n-gram is shown, appended to `out`: one growing string rather than a few
/// short-lived ones per n-gram (this runs for every suggestion).
pub(crate) fn describe_into(chars: &[char], o: &Origin, out: &mut String) {
    let slice = |(s, e): (u32, u32), out: &mut String| out.extend(&chars[s as usize..e as usize]);
    out.push('“');
    match o.kind {
        Kind::WordPair => {
            slice(o.a, out);
            out.push(' ');
            slice(o.b, out);
            out.push('”');
        }
        Kind::CharGram => {
            if o.b.0 & 1 != 0 {
                out.push('<');
            }
            slice(o.a, out);
            if o.b.0 & 2 != 0 {
                out.push('>');
            }
            out.push_str("” (in a word)");
        }
        _ => {
            slice(o.a, out);
            out.push('”');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(text: &str) -> Vec<String> {
        let mut chars = Vec::new();
        normalize_into(text, &mut chars);
        let mut out = Vec::new();
        for_each_ngram(&chars, |_, o| out.push(describe(&chars, &o)));
        out
    }

    #[test]
    fn chinese_gives_char_ngrams() {
        let g = grams("退款了");
        for want in ["“退”", "“退款”", "“退款了”", "“款了”", "“了”"] {
            assert!(g.contains(&want.to_string()), "{want} in {g:?}");
        }
    }

    #[test]
    fn english_gives_words_pairs_and_char_grams() {
        let g = grams("Refund STATUS");
        for want in [
            "“refund”",
            "“refund status”",
            "“<re” (in a word)",
            "“us>” (in a word)",
        ] {
            assert!(g.contains(&want.to_string()), "{want} in {g:?}");
        }
    }

    #[test]
    fn normalizes_width_case_and_digits() {
        let mut chars = Vec::new();
        normalize_into("ＡＢ１2", &mut chars);
        assert_eq!(chars.iter().collect::<String>(), "ab00");
    }

    #[test]
    fn typo_shares_most_features() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut chars = Vec::new();
        let mut d = Dedup::default();
        normalize_into("payment failed", &mut chars);
        vectorize(&chars, &mut a, &mut d);
        normalize_into("paymnet failed", &mut chars);
        vectorize(&chars, &mut b, &mut d);
        let shared = a.iter().filter(|x| b.iter().any(|y| y.0 == x.0)).count();
        assert!(shared * 2 > a.len(), "{shared} of {}", a.len());
    }

    #[test]
    fn vector_is_unit_length_without_repeats() {
        let mut v = Vec::new();
        let mut chars = Vec::new();
        normalize_into("我的card被decline了 decline", &mut chars);
        vectorize(&chars, &mut v, &mut Dedup::default());
        let norm: f32 = v.iter().map(|f| f.1 * f.1).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let mut buckets: Vec<u32> = v.iter().map(|f| f.0).collect();
        buckets.sort();
        buckets.dedup();
        assert_eq!(buckets.len(), v.len(), "each bucket once");
    }
}
