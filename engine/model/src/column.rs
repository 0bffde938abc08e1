use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Int32Type, TimeUnit};
use serde::{Deserialize, Serialize};

/// The time zone of every time column. It is the one DataFusion's `now()`
/// returns, so `recorded_at >= NOW() - INTERVAL '24 hours'` compares without
/// a cast on the column (which would defeat time-range pruning).
pub const TIME_ZONE: &str = "+00:00";

/// Arrow type of a table's time column.
pub fn time_data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from(TIME_ZONE)))
}

/// The type of a column, as the catalog records it. A tag is a string that
/// identifies a series; it is stored dictionary-encoded. `Binary` holds
/// opaque bytes Weir writes itself (a rollup's quantile sketches); no write
/// from outside may create one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Time,
    Tag,
    F64,
    I64,
    U64,
    Bool,
    String,
    Binary,
}

impl ColumnType {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Time => time_data_type(),
            ColumnType::Tag => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            ColumnType::F64 => DataType::Float64,
            ColumnType::I64 => DataType::Int64,
            ColumnType::U64 => DataType::UInt64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::String => DataType::Utf8,
            ColumnType::Binary => DataType::Binary,
        }
    }

    /// The column type an Arrow type stores, if Weir stores that Arrow type.
    pub fn from_data_type(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => ColumnType::Time,
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                ColumnType::Tag
            }
            DataType::Float64 => ColumnType::F64,
            DataType::Int64 => ColumnType::I64,
            DataType::UInt64 => ColumnType::U64,
            DataType::Boolean => ColumnType::Bool,
            DataType::Utf8 => ColumnType::String,
            DataType::Binary => ColumnType::Binary,
            _ => return None,
        })
    }

    pub fn is_tag(self) -> bool {
        self == ColumnType::Tag
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Time => "time",
            ColumnType::Tag => "tag",
            ColumnType::F64 => "f64",
            ColumnType::I64 => "i64",
            ColumnType::U64 => "u64",
            ColumnType::Bool => "bool",
            ColumnType::String => "string",
            ColumnType::Binary => "binary",
        })
    }
}

/// One value of a point: a tag value or a typed field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Tag(&'a str),
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    String(&'a str),
}

impl Value<'_> {
    pub fn column_type(&self) -> ColumnType {
        match self {
            Value::Tag(_) => ColumnType::Tag,
            Value::F64(_) => ColumnType::F64,
            Value::I64(_) => ColumnType::I64,
            Value::U64(_) => ColumnType::U64,
            Value::Bool(_) => ColumnType::Bool,
            Value::String(_) => ColumnType::String,
        }
    }
}

// Keeps the dictionary key type in one place.
pub(crate) type TagKey = Int32Type;
