//! [`QuantileSketch`]: a mergeable sketch of a distribution that answers
//! quantiles within a relative error of [`RELATIVE_ACCURACY`].
//!
//! It is DDSketch's log-bucketed histogram (Masson, Rim and Lee, VLDB
//! 2019) with one index range fixed for every sketch: a value `x > 0`
//! counts in bucket `ceil(log_γ x)` with `γ = (1 + α) / (1 − α)`, a
//! negative value in the mirror bucket of `−x`, and zero (and any
//! magnitude below [`MIN_MAGNITUDE`]) in a bucket of its own. Every value
//! of bucket `i` lies in `(γ^(i−1), γ^i]`, and the bucket answers with
//! `2γ^i / (γ + 1)`, within `α` of all of them.
//!
//! Two sketches merge by adding counts bucket by bucket, and the index of a
//! value does not depend on what else the sketch holds, so merging is exact:
//! the merge of the sketches of any split of the rows *is* the sketch of
//! all the rows. That is what lets a rollup keep one per bucket and group,
//! persist, compact and merge them, and still answer exactly what the raw
//! rows' sketch would. (DDSketch's bounded-memory variant collapses its
//! lowest buckets, which is not exact under merging; here the index range
//! is bounded instead: magnitudes above [`MAX_MAGNITUDE`] count in the top
//! bucket, so at most [`MAX_BUCKETS`] buckets per sign.)
//!
//! The serialized form (the rollup's binary column) is versioned, sparse
//! and checked in full when decoded: a sketch from a file or from a SQL
//! literal that does not decode is an error, never a panic or a wrong
//! answer.

/// α: a quantile answer `v` for a true value `x` has `|v − x| ≤ α·|x|`.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Smaller magnitudes count as zero.
pub const MIN_MAGNITUDE: f64 = 1e-9;
/// Larger magnitudes count in the top bucket (and are answered as ~1e12).
pub const MAX_MAGNITUDE: f64 = 1e12;
/// The first byte of every serialized sketch.
const FORMAT_VERSION: u8 = 1;

/// `γ = (1 + α) / (1 − α)`.
fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn index_of(magnitude: f64) -> i32 {
    let clamped = magnitude.min(MAX_MAGNITUDE);
    (clamped.ln() / gamma().ln()).ceil() as i32
}

fn min_index() -> i32 {
    index_of(MIN_MAGNITUDE)
}

fn max_index() -> i32 {
    index_of(MAX_MAGNITUDE)
}

/// Most buckets one sign may use.
pub const MAX_BUCKETS: usize = 2_500;

/// The counts of a distribution's values per log bucket; see the module
/// documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantileSketch {
    zero: u64,
    positive: Buckets,
    negative: Buckets,
}

/// One sign's bucket counts, dense from the lowest index seen to the
/// highest: adding a value or merging a sketch is array arithmetic, and
/// the index range bounds it (at most [`MAX_BUCKETS`] counts).
#[derive(Debug, Clone, Default)]
struct Buckets {
    /// The index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
}

impl Buckets {
    fn add(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        } else if (index - self.offset) as usize >= self.counts.len() {
            self.counts.resize((index - self.offset) as usize + 1, 0);
        }
        let count = &mut self.counts[(index - self.offset) as usize];
        *count = count.saturating_add(n);
    }

    /// The buckets that counted something, by ascending index.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (self.offset + k as i32, *n))
    }

    fn len(&self) -> usize {
        self.counts.iter().filter(|n| **n > 0).count()
    }

    fn merge(&mut self, other: &Buckets) {
        let Some((low, _)) = other.iter().next() else {
            return;
        };
        let (high, _) = other.iter().next_back().unwrap_or((low, 0));
        // Grow once to cover `other`, then add count by count.
        self.add(low, 0);
        self.add(high, 0);
        for (index, n) in other.iter() {
            let count = &mut self.counts[(index - self.offset) as usize];
            *count = count.saturating_add(n);
        }
    }
}

/// Equal when the same buckets counted the same: how the dense range
/// grew does not matter.
impl PartialEq for Buckets {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Buckets {}

impl QuantileSketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `x`. NaN is not counted (it has no place in an order of
    /// magnitudes); ±infinity counts in the top bucket of its sign.
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        let magnitude = x.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zero = self.zero.saturating_add(1);
            return;
        }
        let store = if x > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        store.add(index_of(magnitude), 1);
    }

    /// Adds `other`'s counts to this sketch's. Counts saturate at
    /// `u64::MAX` rather than wrap (only crafted sketches come near it).
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.zero = self.zero.saturating_add(other.zero);
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.positive
            .counts
            .iter()
            .chain(&self.negative.counts)
            .fold(self.zero, |total, &n| total.saturating_add(n))
    }

    /// Bytes the buckets take on the heap.
    pub fn heap_size(&self) -> usize {
        (self.positive.counts.capacity() + self.negative.counts.capacity()) * size_of::<u64>()
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1): the value of rank
    /// `floor(q · (count − 1))` in ascending order (0-based), within the
    /// relative accuracy. `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (count - 1) as f64).floor() as u64;
        // Ascending: the largest negative magnitudes first. `rank` is
        // below `count`, the sum of all buckets, so some bucket answers.
        let ascending = self
            .negative
            .iter()
            .rev()
            .map(|(index, n)| (-representative(index), n))
            .chain(std::iter::once((0.0, self.zero)))
            .chain(
                self.positive
                    .iter()
                    .map(|(index, n)| (representative(index), n)),
            );
        let mut seen = 0u64;
        for (value, n) in ascending {
            seen = seen.saturating_add(n);
            if seen > rank {
                return Some(value);
            }
        }
        None
    }

    /// The serialized form: the format version, then the zero count and
    /// each sign's buckets as (index delta, count) pairs, all LEB128
    /// varints (indices zigzag-encoded).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 3 * (self.positive.len() + self.negative.len()));
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.zero);
        for store in [&self.positive, &self.negative] {
            put_varint(&mut out, store.len() as u64);
            let mut previous = 0i64;
            for (index, count) in store.iter() {
                put_varint(&mut out, zigzag(i64::from(index) - previous));
                put_varint(&mut out, count);
                previous = i64::from(index);
            }
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes)' form. Checks everything: the
    /// version, bucket indices in range and strictly ascending, counts
    /// above zero, a total that fits in `u64`, and no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.byte()?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "quantile sketch format {version} is not known (this build reads {FORMAT_VERSION})"
            ));
        }
        let mut sketch = Self {
            zero: reader.varint()?,
            ..Self::default()
        };
        let mut total = sketch.zero;
        let (low, high) = (min_index(), max_index());
        for sign in 0..2 {
            let buckets = reader.varint()?;
            if buckets > MAX_BUCKETS as u64 {
                return Err(format!(
                    "quantile sketch has {buckets} buckets; at most {MAX_BUCKETS}"
                ));
            }
            let mut store = Buckets::default();
            let mut previous = 0i64;
            for b in 0..buckets {
                let index = previous.saturating_add(unzigzag(reader.varint()?));
                if (b > 0 && index <= previous) || index < i64::from(low) || index > i64::from(high)
                {
                    return Err(format!(
                        "quantile sketch bucket {index} is out of order or out of range"
                    ));
                }
                let count = reader.varint()?;
                if count == 0 {
                    return Err("quantile sketch has an empty bucket".into());
                }
                total = total
                    .checked_add(count)
                    .ok_or("quantile sketch counts overflow")?;
                store.add(index as i32, count);
                previous = index;
            }
            if sign == 0 {
                sketch.positive = store;
            } else {
                sketch.negative = store;
            }
        }
        if reader.at != bytes.len() {
            return Err(format!(
                "quantile sketch has {} bytes after its end",
                bytes.len() - reader.at
            ));
        }
        Ok(sketch)
    }
}

/// The value bucket `index` answers with: within α of every value in it.
fn representative(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (g + 1.0)
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("quantile sketch is cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("quantile sketch varint overflows".into());
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("quantile sketch varint is longer than 10 bytes".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    /// A deterministic spread of values over many orders of magnitude and
    /// both signs, with zeros and repeats.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                match state % 10 {
                    0 => 0.0,
                    1 => -(10f64.powf(u * 6.0)),
                    2 => 42.0,
                    _ => 10f64.powf(u * 9.0 - 3.0),
                }
            })
            .collect()
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy_of_the_exact_ones() {
        let mut xs = values(20_000, 7);
        let mut sketch = QuantileSketch::new();
        for &x in &xs {
            sketch.add(x);
        }
        xs.sort_by(f64::total_cmp);
        assert_eq!(sketch.count(), xs.len() as u64);
        for q in [0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&xs, q);
            let answer = sketch.quantile(q).unwrap();
            assert!(
                (answer - exact).abs() <= RELATIVE_ACCURACY * exact.abs() + 1e-12,
                "q {q}: sketch {answer}, exact {exact}"
            );
        }
        assert_eq!(QuantileSketch::new().quantile(0.5), None);
    }

    #[test]
    fn merging_the_sketches_of_any_split_is_the_sketch_of_all_rows() {
        let xs = values(5_000, 11);
        let mut whole = QuantileSketch::new();
        xs.iter().for_each(|&x| whole.add(x));
        for parts in [2, 3, 17, 5_000] {
            let mut merged = QuantileSketch::new();
            for chunk in xs.chunks(xs.len().div_ceil(parts)) {
                let mut part = QuantileSketch::new();
                chunk.iter().for_each(|&x| part.add(x));
                // Through the serialized form, as a rollup file keeps it.
                merged.merge(&QuantileSketch::from_bytes(&part.to_bytes()).unwrap());
            }
            assert_eq!(merged, whole, "{parts} parts");
            assert_eq!(merged.to_bytes(), whole.to_bytes());
        }
    }

    #[test]
    fn extremes_are_counted_in_the_edge_buckets() {
        let mut sketch = QuantileSketch::new();
        for x in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            1e-300,
            0.0,
            -0.0,
        ] {
            sketch.add(x);
        }
        // NaN is not counted; the rest are.
        assert_eq!(sketch.count(), 7);
        assert!(sketch.positive.len() == 1 && sketch.negative.len() == 1);
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - MAX_MAGNITUDE).abs() <= RELATIVE_ACCURACY * MAX_MAGNITUDE);
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        let round_trip = QuantileSketch::from_bytes(&sketch.to_bytes()).unwrap();
        assert_eq!(round_trip, sketch);
    }

    #[test]
    fn every_malformed_encoding_is_an_error() {
        let mut sketch = QuantileSketch::new();
        for x in [1.0, 2.0, 300.0, -5.0] {
            sketch.add(x);
        }
        let good = sketch.to_bytes();
        // Every truncation, and every byte after the end.
        for cut in 0..good.len() {
            assert!(
                QuantileSketch::from_bytes(&good[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(
            QuantileSketch::from_bytes(&long)
                .unwrap_err()
                .contains("after its end")
        );
        // Every single-byte change decodes to an error or to some valid
        // sketch; it never panics.
        for at in 0..good.len() {
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = b;
                let _ = QuantileSketch::from_bytes(&bad);
            }
        }
        let cases: [(&[u8], &str); 6] = [
            (&[2, 0, 0, 0], "format 2"),
            (&[1, 0, 1, 0x80, 0x40, 1, 0], "out of order or out of range"),
            (&[1, 0, 2, 2, 1, 0, 1, 0], "out of order or out of range"),
            (&[1, 0, 1, 2, 0, 0], "empty bucket"),
            (&[1, 0, 0xff, 0xff, 0x03, 0], "buckets; at most"),
            (
                &[
                    1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                "overflows",
            ),
        ];
        for (bytes, expect) in cases {
            let err = QuantileSketch::from_bytes(bytes).unwrap_err();
            assert!(err.contains(expect), "{bytes:?}: {err}");
        }
        let total_overflow = {
            let mut b = vec![1];
            put_varint(&mut b, u64::MAX);
            b.extend([1, 2, 1, 0]);
            b
        };
        assert!(
            QuantileSketch::from_bytes(&total_overflow)
                .unwrap_err()
                .contains("overflow")
        );
    }
}
