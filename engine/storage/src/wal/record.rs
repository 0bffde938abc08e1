//! The WAL's on-disk format.
//!
//! A segment file is an 8-byte magic followed by frames:
//!
//! ```text
//! frame   := len: u32 LE | crc32c(payload): u32 LE | payload[len]
//! payload := tables: u32 LE | table*
//! table   := name_len: u16 LE | name | ipc_len: u32 LE | Arrow IPC stream
//! ```
//!
//! A write request is one frame, so it is replayed whole or not at all. The
//! checksum tells a torn or corrupt frame from a good one; the decoder checks
//! every length against what is left, so corrupt bytes give an error, never a
//! panic or a huge allocation.

use std::io::Cursor;

use arrow::array::AsArray;
use arrow::datatypes::TimestampNanosecondType;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"WEIRWAL\x01";
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// No single write request comes near this; a larger length is corruption.
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 30;

/// One table's rows within a WAL record, with the span of their times
/// (what lets a query skip the batch while it is buffered).
#[derive(Debug, Clone)]
pub struct WalTable {
    pub table: String,
    pub batch: RecordBatch,
    pub min_time: i64,
    pub max_time: i64,
}

impl WalTable {
    /// `batch`'s time column is its first. Computed here, before the rows
    /// reach the buffer's lock. A batch without a readable time column
    /// spans all time, so nothing ever skips it.
    pub fn new(table: String, batch: RecordBatch) -> Self {
        let times = batch
            .column(0)
            .as_primitive_opt::<TimestampNanosecondType>();
        let (min_time, max_time) = times
            .and_then(|t| Some((arrow::compute::min(t)?, arrow::compute::max(t)?)))
            .unwrap_or((i64::MIN, i64::MAX));
        Self {
            table,
            batch,
            min_time,
            max_time,
        }
    }
}

/// Encodes a write as a frame payload.
pub(crate) fn encode_payload(tables: &[WalTable]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        4 + tables
            .iter()
            .map(|t| t.batch.get_array_memory_size() + t.table.len() + 512)
            .sum::<usize>(),
    );
    out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
    for t in tables {
        let name = t.table.as_bytes();
        let name_len = u16::try_from(name.len())
            .map_err(|_| Error::Internal(format!("table name of {} bytes", name.len())))?;
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(name);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let encode_err = |source| Error::WalEncode {
            table: t.table.clone(),
            source,
        };
        let mut writer = StreamWriter::try_new(&mut out, &t.batch.schema()).map_err(encode_err)?;
        writer.write(&t.batch).map_err(encode_err)?;
        writer.finish().map_err(encode_err)?;
        drop(writer);
        let ipc_len = u32::try_from(out.len() - len_at - 4)
            .map_err(|_| Error::Internal("WAL record larger than 4 GiB".into()))?;
        out[len_at..len_at + 4].copy_from_slice(&ipc_len.to_le_bytes());
    }
    Ok(out)
}

/// Prepends the frame header (length and checksum) to `payload`.
pub(crate) fn append_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes a frame payload. The error is a human-readable reason.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Vec<WalTable>, String> {
    let mut rest = payload;
    let count = take_u32(&mut rest)? as usize;
    // Each table takes at least 6 bytes; a larger count is corruption.
    if count > rest.len() / 6 {
        return Err(format!("table count {count} exceeds the record size"));
    }
    let mut tables = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = take_u16(&mut rest)? as usize;
        let name = take(&mut rest, name_len)?;
        let table = std::str::from_utf8(name)
            .map_err(|_| "table name is not UTF-8".to_string())?
            .to_string();
        let ipc_len = take_u32(&mut rest)? as usize;
        let ipc = take(&mut rest, ipc_len)?;
        let reader = StreamReader::try_new(Cursor::new(ipc), None)
            .map_err(|e| format!("table {table:?}: Arrow IPC: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("table {table:?}: Arrow IPC: {e}"))?;
            tables.push(WalTable::new(table.clone(), batch));
        }
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(tables)
}

/// What [`next_frame`] found at an offset of a segment.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// A whole frame whose checksum matches; `next` is the offset after it.
    Valid { payload: &'a [u8], next: usize },
    /// The segment ends cleanly here.
    End,
    /// The bytes from here on are not a valid frame.
    Invalid { reason: String },
}

pub(crate) fn next_frame(segment: &[u8], offset: usize) -> Frame<'_> {
    let rest = &segment[offset.min(segment.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Frame::Invalid {
            reason: format!("{} bytes left, too few for a frame header", rest.len()),
        };
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_FRAME_BYTES {
        return Frame::Invalid {
            reason: format!("frame length {len} is implausible"),
        };
    }
    let available = rest.len() - FRAME_HEADER_BYTES;
    if len > available {
        return Frame::Invalid {
            reason: format!("frame of {len} bytes but only {available} bytes left"),
        };
    }
    let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
    if crc32c::crc32c(payload) != crc {
        return Frame::Invalid {
            reason: "checksum mismatch".to_string(),
        };
    }
    Frame::Valid {
        payload,
        next: offset + FRAME_HEADER_BYTES + len,
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err(format!("needs {n} bytes, {} left", rest.len()));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u16(rest: &mut &[u8]) -> Result<u16, String> {
    let b = take(rest, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, String> {
    let b = take(rest, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use weir_model::{ColumnType, Value, WriteBatchBuilder};

    use super::*;

    fn sample(rows: usize) -> Vec<WalTable> {
        let mut b = WriteBatchBuilder::new(1);
        let t = b.table("service_metrics", "recorded_at").unwrap();
        let svc = b.column(t, "service_name", ColumnType::Tag, 0).unwrap();
        let ms = b.column(t, "response_ms", ColumnType::F64, 0).unwrap();
        for row in 0..rows {
            b.begin_point(t, row, 1 + row as i64).unwrap();
            b.set(t, svc, row, Value::Tag(["a", "b"][row % 2])).unwrap();
            if row % 3 != 0 {
                b.set(t, ms, row, Value::F64(row as f64)).unwrap();
            }
        }
        b.finish()
            .unwrap()
            .into_iter()
            .map(|tb| WalTable::new(tb.table, tb.batch))
            .collect()
    }

    #[test]
    fn payload_round_trips() {
        for rows in [1, 7, 1000] {
            let tables = sample(rows);
            let payload = encode_payload(&tables).unwrap();
            let decoded = decode_payload(&payload).unwrap();
            assert_eq!(decoded.len(), 1);
            assert_eq!(decoded[0].table, tables[0].table);
            assert_eq!(decoded[0].batch, tables[0].batch);
        }
    }

    #[test]
    fn frames_detect_truncation_and_corruption() {
        let payload = encode_payload(&sample(10)).unwrap();
        let mut segment = Vec::new();
        append_frame(&mut segment, &payload);
        append_frame(&mut segment, &payload);
        let Frame::Valid { next, .. } = next_frame(&segment, 0) else {
            panic!("first frame invalid")
        };
        assert!(matches!(next_frame(&segment, next), Frame::Valid { .. }));
        for cut in [1, 5, 9, payload.len()] {
            let torn = &segment[..segment.len() - cut];
            assert!(
                matches!(next_frame(torn, next), Frame::Invalid { .. }),
                "cut {cut}"
            );
        }
        let mut flipped = segment.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(next_frame(&flipped, next), Frame::Invalid { .. }));
        assert_eq!(next_frame(&segment, segment.len()), Frame::End);
    }

    /// Decoders see whatever a crash or a bad disk leaves: never panic.
    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let good = encode_payload(&sample(20)).unwrap();
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            bytes.truncate(rng.random_range(0..=bytes.len()));
            let _ = decode_payload(&bytes);
            let _ = next_frame(&bytes, 0);
        }
        for len in 0..64 {
            let noise: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = decode_payload(&noise);
            let _ = next_frame(&noise, 0);
        }
    }
}
