//! Request bodies arrive compressed (gzip for line protocol and OTLP/HTTP,
//! snappy for remote write). A few KiB can claim gigabytes, so every
//! decompression here stops at a limit instead of trusting the body.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::{Error, Result};

/// Decompresses a gzip body (all its members, as `gzip -c a b` writes
/// them), refusing to produce more than `limit` bytes.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed(format!("the body is not valid gzip ({e})")))?;
    if out.len() > limit {
        return Err(Error::TooLarge {
            what: "the decompressed body",
            limit,
        });
    }
    Ok(out)
}

/// The decompressed length a snappy block states, if it states one.
pub fn snappy_len(body: &[u8]) -> Option<usize> {
    snap::raw::decompress_len(body).ok()
}

/// Decompresses a snappy block (the raw format remote write uses, not the
/// framed one). The block states its length up front; it is checked
/// against `limit` before anything is allocated.
pub fn unsnappy(body: &[u8], limit: usize) -> Result<Vec<u8>> {
    let malformed =
        |e: snap::Error| Error::Malformed(format!("the body is not valid snappy ({e})"));
    let len = snap::raw::decompress_len(body).map_err(malformed)?;
    if len > limit {
        return Err(Error::TooLarge {
            what: "the decompressed body",
            limit,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(malformed)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_round_trips_and_stops_at_the_limit() {
        assert_eq!(gunzip(&gzip(b"m v=1\n"), 100).unwrap(), b"m v=1\n");
        // Two members, as concatenated files.
        let mut two = gzip(b"a v=1\n");
        two.extend(gzip(b"b v=2\n"));
        assert_eq!(gunzip(&two, 100).unwrap(), b"a v=1\nb v=2\n");

        // A bomb: 64 MiB of zeros in about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        let err = gunzip(&bomb, 1 << 20).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        // Exactly at the limit is fine.
        assert_eq!(gunzip(&gzip(&[7u8; 1000]), 1000).unwrap().len(), 1000);

        let err = gunzip(b"not gzip at all", 100).unwrap_err();
        assert!(err.to_string().contains("not valid gzip"), "{err}");
        let truncated = &gzip(b"m v=1\n")[..10];
        assert!(gunzip(truncated, 100).is_err());
    }

    #[test]
    fn snappy_checks_the_stated_length_before_allocating() {
        let block = snap::raw::Encoder::new().compress_vec(b"hello").unwrap();
        assert_eq!(unsnappy(&block, 5).unwrap(), b"hello");
        let err = unsnappy(&block, 4).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");

        // A header claiming 2^32-1 bytes, with nothing behind it.
        let lie = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            unsnappy(&lie, 1 << 20),
            Err(Error::TooLarge { .. })
        ));
        let err = unsnappy(b"\x05garbage", 100).unwrap_err();
        assert!(err.to_string().contains("not valid snappy"), "{err}");
        assert!(unsnappy(b"", 100).is_err());
    }
}
