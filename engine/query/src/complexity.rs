//! Bounds on the shape of a query, checked after parsing and before planning.
//!
//! The parser bounds its own recursion (`sql_parser.recursion_limit`: nested
//! parentheses, function calls, subqueries), but a chain of left-associative
//! operators — `1+1+…+1`, `a OR b OR …`, `x || y || …`, `::` casts — is
//! parsed by a loop into a tree as deep as the chain is long, and so are
//! `UNION ALL` chains, join chains and chains of CTEs once planned. Every
//! later step (planning, optimizer rules, physical expressions, even `Drop`)
//! walks such a tree recursively, and a stack overflow aborts the process: a
//! 4 KB request must not do that. So the depth of expressions and of the
//! plan a statement implies is measured here, with a walk that itself stops
//! at the limit, and a deeper query is refused with a clear error. Queries
//! also run on threads with large stacks (see `engine.rs`) so that anything
//! under the limit has room to spare.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};

/// Longest accepted SQL text, in bytes (ClickHouse's `max_query_size` default).
pub const MAX_SQL_BYTES: usize = 256 << 10;

/// Deepest accepted nesting of expressions, and of set operations, joins and
/// CTEs. Generous for hand-written and generated SQL (the reference uptime
/// query nests 6 deep); `IN (…)` lists and `VALUES` rows are flat and do not
/// count.
pub const MAX_SQL_DEPTH: usize = 256;

/// Why a statement is refused: its nesting depth, at least `depth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub what: &'static str,
    pub depth: usize,
}

/// Checks `statement` against [`MAX_SQL_DEPTH`].
pub fn check_depth(statement: &DfStatement, limit: usize) -> Result<(), TooDeep> {
    match statement {
        DfStatement::Statement(statement) => {
            let mut check = DepthCheck {
                depth: 0,
                limit,
                refused: None,
            };
            let _ = statement.visit(&mut check);
            match check.refused {
                Some(refused) => Err(refused),
                None => Ok(()),
            }
        }
        DfStatement::Explain(explain) => check_depth(&explain.statement, limit),
        // DDL and COPY: refused as not read-only after planning, and their
        // shapes are not recursive.
        _ => Ok(()),
    }
}

struct DepthCheck {
    /// Expressions open on the current path.
    depth: usize,
    limit: usize,
    refused: Option<TooDeep>,
}

impl DepthCheck {
    fn refuse(&mut self, what: &'static str, depth: usize) -> ControlFlow<()> {
        self.refused = Some(TooDeep { what, depth });
        ControlFlow::Break(())
    }
}

impl Visitor for DepthCheck {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.limit {
            // Breaking here keeps this walk's own recursion within the limit.
            return self.refuse("expressions", self.depth);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let ctes = query.with.as_ref().map_or(0, |w| w.cte_tables.len());
        let depth = ctes + plan_depth(&query.body, self.limit + 1);
        if depth > self.limit {
            return self.refuse("set operations, joins and CTEs", depth);
        }
        ControlFlow::Continue(())
    }
}

/// How deep the plan of a query body is: one level per set operation and
/// per joined relation. Stops counting past `budget`, so the walk's own
/// recursion is bounded too.
fn plan_depth(body: &SetExpr, budget: usize) -> usize {
    if budget == 0 {
        return 1;
    }
    match body {
        SetExpr::SetOperation { left, right, .. } => {
            1 + plan_depth(left, budget - 1).max(plan_depth(right, budget - 1))
        }
        SetExpr::Select(select) => select.from.iter().map(|from| 1 + from.joins.len()).sum(),
        SetExpr::Query(query) => {
            query.with.as_ref().map_or(0, |w| w.cte_tables.len()) + plan_depth(&query.body, budget)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;

    use super::*;

    fn depth_of(sql: &str) -> Result<(), TooDeep> {
        let mut statements = DFParserBuilder::new(sql)
            .build()
            .unwrap()
            .parse_statements()
            .unwrap();
        check_depth(&statements.pop_front().unwrap(), MAX_SQL_DEPTH)
    }

    fn chain(n: usize, term: &str, sep: &str) -> String {
        vec![term; n].join(sep)
    }

    #[test]
    fn ordinary_queries_pass() {
        depth_of("SELECT service_name, COUNT(*) FILTER (WHERE status = 'healthy') FROM t WHERE recorded_at > NOW() - INTERVAL '1 hour' GROUP BY 1").unwrap();
        depth_of(&format!(
            "SELECT 1 WHERE x IN ({})",
            chain(10_000, "1", ",")
        ))
        .unwrap();
        depth_of(&format!("SELECT {}", chain(MAX_SQL_DEPTH - 1, "1", "+"))).unwrap();
    }

    #[test]
    fn every_kind_of_chain_past_the_limit_is_refused() {
        let n = MAX_SQL_DEPTH + 10;
        let cases = [
            (format!("SELECT {}", chain(n, "1", "+")), "expressions"),
            (format!("SELECT {}", chain(n, "'a'", "||")), "expressions"),
            (
                format!("SELECT 1 WHERE {}", chain(n, "x = 1", " OR ")),
                "expressions",
            ),
            (
                format!("SELECT 1 WHERE {}", chain(n, "x = 1", " AND ")),
                "expressions",
            ),
            (format!("SELECT 1{}", "::int".repeat(n)), "expressions"),
            (
                chain(n, "SELECT 1", " UNION ALL "),
                "set operations, joins and CTEs",
            ),
            (
                format!("SELECT 1 FROM t {}", chain(n, "JOIN t USING (x)", " ")),
                "set operations, joins and CTEs",
            ),
            (
                format!("SELECT 1 FROM {}", chain(n, "t", ", ")),
                "set operations, joins and CTEs",
            ),
            (
                format!(
                    "WITH {} SELECT 1",
                    (0..n)
                        .map(|i| format!("c{i} AS (SELECT 1)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set operations, joins and CTEs",
            ),
            (
                format!("SELECT (SELECT {})", chain(n, "1", "*")),
                "expressions",
            ),
            (
                format!("EXPLAIN SELECT {}", chain(n, "1", "-")),
                "expressions",
            ),
        ];
        for (sql, what) in cases {
            let refused = depth_of(&sql).unwrap_err();
            assert_eq!(refused.what, what, "{}", &sql[..60.min(sql.len())]);
            assert!(refused.depth > MAX_SQL_DEPTH);
        }
    }
}
