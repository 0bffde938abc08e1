//! The time range a query's filters imply, for pruning files.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// An inclusive range of nanosecond timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub min: i64,
    pub max: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        min: i64::MIN,
        max: i64::MAX,
    };

    /// Narrows the range by every conjunct of `filters` that compares
    /// `time_column` with a timestamp literal. Anything else is ignored (it
    /// can only make the range wider than needed, never too narrow).
    pub fn from_filters(filters: &[Expr], time_column: &str) -> Self {
        let mut range = Self::ALL;
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                range.narrow(conjunct, time_column);
            }
        }
        range
    }

    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.min <= max && min <= self.max
    }

    fn narrow(&mut self, expr: &Expr, time_column: &str) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if is_time_column(left, time_column)
                    && let Some(v) = timestamp_ns(right)
                {
                    self.apply(*op, v);
                } else if is_time_column(right, time_column)
                    && let Some(v) = timestamp_ns(left)
                    && let Some(op) = op.swap()
                {
                    self.apply(op, v);
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time_column(expr, time_column) => {
                if let Some(low) = timestamp_ns(low) {
                    self.apply(Operator::GtEq, low);
                }
                if let Some(high) = timestamp_ns(high) {
                    self.apply(Operator::LtEq, high);
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self, op: Operator, v: i64) {
        match op {
            Operator::Eq => {
                self.min = self.min.max(v);
                self.max = self.max.min(v);
            }
            Operator::Gt => self.min = self.min.max(v.saturating_add(1)),
            Operator::GtEq => self.min = self.min.max(v),
            Operator::Lt => self.max = self.max.min(v.saturating_sub(1)),
            Operator::LtEq => self.max = self.max.min(v),
            _ => {}
        }
    }
}

fn is_time_column(expr: &Expr, time_column: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == time_column,
        // A cast between timestamp types keeps the instant.
        Expr::Cast(cast) if cast.field.data_type().is_temporal() => {
            is_time_column(&cast.expr, time_column)
        }
        _ => false,
    }
}

/// A timestamp literal, in nanoseconds.
fn timestamp_ns(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("+00:00".into()),
        ))
    }

    #[test]
    fn narrows_by_comparisons_and_between() {
        let filters = vec![
            col("t").gt_eq(ts(100)).and(col("t").lt(ts(200))),
            col("x").gt(lit(5)),
        ];
        assert_eq!(
            TimeRange::from_filters(&filters, "t"),
            TimeRange { min: 100, max: 199 }
        );
        let between = vec![col("t").between(ts(10), ts(20))];
        assert_eq!(
            TimeRange::from_filters(&between, "t"),
            TimeRange { min: 10, max: 20 }
        );
        let flipped = vec![ts(50).lt(col("t"))];
        assert_eq!(TimeRange::from_filters(&flipped, "t").min, 51);
    }

    #[test]
    fn ignores_disjunctions_and_other_columns() {
        let filters = vec![
            col("t").gt(ts(100)).or(col("t").lt(ts(5))),
            col("u").gt(ts(7)),
        ];
        assert_eq!(TimeRange::from_filters(&filters, "t"), TimeRange::ALL);
    }
}
