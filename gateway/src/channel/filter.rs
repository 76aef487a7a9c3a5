//! Server-side tags filters (`tf` in a subscribe request).
//!
//! A client's [`FilterNode`] tree is compiled once, at subscribe, into a
//! [`TagFilter`]: every operator is resolved, numbers are parsed and the tree
//! is bounded in depth, nodes and values. Fan-out then evaluates it against
//! each publication's tags with map lookups and comparisons only: no
//! allocation, no parsing of the filter per message.
//!
//! Semantics (the Centrifugo `FilterNode` operators): `eq`, `neq`, `in`,
//! `nin` compare the tag's value with `val` / `vals`; `ex` / `nex` test that
//! the tag is present / absent; `sw`, `ew`, `ct` are starts-with, ends-with
//! and contains; `lt`, `lte`, `gt`, `gte` compare numerically. A missing tag
//! matches `neq`, `nin` and `nex` only. `and` / `or` take one or more nodes,
//! `not` exactly one.

use std::collections::HashMap;

use crate::protocol::FilterNode;

/// Deepest nesting of `and`/`or`/`not` a filter may use (a leaf alone is 1).
pub const MAX_FILTER_DEPTH: usize = 8;
/// Most nodes (leaves and operators) in one filter.
pub const MAX_FILTER_NODES: usize = 64;
/// Most values (`val` and `vals` entries) in one filter.
pub const MAX_FILTER_VALUES: usize = 256;

/// Why a filter was refused at subscribe (error 107 bad request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("tags filter nested too deep (max {MAX_FILTER_DEPTH} levels)")]
    TooDeep,
    #[error("tags filter too large (max {MAX_FILTER_NODES} nodes)")]
    TooManyNodes,
    #[error("tags filter has too many values (max {MAX_FILTER_VALUES})")]
    TooManyValues,
    #[error("unknown tags filter op {0:?} (and, or, not)")]
    UnknownOp(String),
    #[error("unknown tags filter cmp {0:?} (eq, neq, in, nin, ex, nex, sw, ew, ct, lt, lte, gt, gte)")]
    UnknownCmp(String),
    #[error("tags filter comparison needs a key")]
    MissingKey,
    #[error("tags filter comparison cannot have nodes")]
    LeafWithNodes,
    #[error("tags filter {0:?} takes nodes, not key, cmp or values")]
    LogicWithLeafFields(String),
    #[error("tags filter {0:?} needs at least one node")]
    EmptyLogic(String),
    #[error("tags filter \"not\" takes exactly one node")]
    NotArity,
    #[error("tags filter {0:?} needs vals")]
    MissingVals(String),
    #[error("tags filter {0:?} needs a number in val (got {1:?})")]
    NotANumber(String, String),
}

/// A validated, compiled tags filter.
#[derive(Debug, Clone, PartialEq)]
pub struct TagFilter {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Leaf { key: Box<str>, cmp: Cmp },
}

#[derive(Debug, Clone, PartialEq)]
enum Cmp {
    Eq(Box<str>),
    Neq(Box<str>),
    In(Box<[Box<str>]>),
    Nin(Box<[Box<str>]>),
    Exists,
    NotExists,
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
}

/// Running totals while compiling, for the size bounds.
#[derive(Default)]
struct Budget {
    nodes: usize,
    values: usize,
}

impl TagFilter {
    /// Validates and compiles `node`.
    pub fn compile(node: &FilterNode) -> Result<Self, FilterError> {
        let mut budget = Budget::default();
        Ok(Self { root: compile(node, 1, &mut budget)? })
    }

    /// Whether a publication with `tags` passes the filter.
    pub fn matches(&self, tags: &HashMap<String, String>) -> bool {
        self.root.matches(tags)
    }
}

fn compile(node: &FilterNode, depth: usize, budget: &mut Budget) -> Result<Node, FilterError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(FilterError::TooDeep);
    }
    budget.nodes += 1;
    if budget.nodes > MAX_FILTER_NODES {
        return Err(FilterError::TooManyNodes);
    }
    if node.op.is_empty() {
        return compile_leaf(node, budget);
    }
    if !(node.key.is_empty() && node.cmp.is_empty() && node.val.is_empty() && node.vals.is_empty()) {
        return Err(FilterError::LogicWithLeafFields(node.op.clone()));
    }
    if node.nodes.is_empty() {
        return Err(FilterError::EmptyLogic(node.op.clone()));
    }
    let mut compiled = Vec::with_capacity(node.nodes.len());
    for child in &node.nodes {
        compiled.push(compile(child, depth + 1, budget)?);
    }
    match node.op.as_str() {
        "and" => Ok(Node::And(compiled.into())),
        "or" => Ok(Node::Or(compiled.into())),
        "not" if compiled.len() == 1 => Ok(Node::Not(Box::new(compiled.remove(0)))),
        "not" => Err(FilterError::NotArity),
        other => Err(FilterError::UnknownOp(other.to_owned())),
    }
}

fn compile_leaf(node: &FilterNode, budget: &mut Budget) -> Result<Node, FilterError> {
    if !node.nodes.is_empty() {
        return Err(FilterError::LeafWithNodes);
    }
    if node.key.is_empty() {
        return Err(FilterError::MissingKey);
    }
    budget.values += 1 + node.vals.len();
    if budget.values > MAX_FILTER_VALUES {
        return Err(FilterError::TooManyValues);
    }
    let val = || node.val.as_str().into();
    let vals = || -> Result<Box<[Box<str>]>, FilterError> {
        if node.vals.is_empty() {
            return Err(FilterError::MissingVals(node.cmp.clone()));
        }
        Ok(node.vals.iter().map(|v| v.as_str().into()).collect())
    };
    let number = || {
        node.val
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| FilterError::NotANumber(node.cmp.clone(), node.val.clone()))
    };
    let cmp = match node.cmp.as_str() {
        "eq" => Cmp::Eq(val()),
        "neq" => Cmp::Neq(val()),
        "in" => Cmp::In(vals()?),
        "nin" => Cmp::Nin(vals()?),
        "ex" => Cmp::Exists,
        "nex" => Cmp::NotExists,
        "sw" => Cmp::StartsWith(val()),
        "ew" => Cmp::EndsWith(val()),
        "ct" => Cmp::Contains(val()),
        "lt" => Cmp::Lt(number()?),
        "lte" => Cmp::Lte(number()?),
        "gt" => Cmp::Gt(number()?),
        "gte" => Cmp::Gte(number()?),
        other => return Err(FilterError::UnknownCmp(other.to_owned())),
    };
    Ok(Node::Leaf { key: node.key.as_str().into(), cmp })
}

impl Node {
    fn matches(&self, tags: &HashMap<String, String>) -> bool {
        match self {
            Node::And(nodes) => nodes.iter().all(|n| n.matches(tags)),
            Node::Or(nodes) => nodes.iter().any(|n| n.matches(tags)),
            Node::Not(node) => !node.matches(tags),
            Node::Leaf { key, cmp } => cmp.matches(tags.get(&**key).map(String::as_str)),
        }
    }
}

impl Cmp {
    fn matches(&self, value: Option<&str>) -> bool {
        // A tag that is not a number fails every numeric comparison.
        let number = || value.and_then(|v| v.trim().parse::<f64>().ok());
        match self {
            Cmp::Eq(want) => value == Some(&**want),
            Cmp::Neq(want) => value != Some(&**want),
            Cmp::In(set) => value.is_some_and(|v| set.iter().any(|s| **s == *v)),
            Cmp::Nin(set) => value.is_none_or(|v| !set.iter().any(|s| **s == *v)),
            Cmp::Exists => value.is_some(),
            Cmp::NotExists => value.is_none(),
            Cmp::StartsWith(p) => value.is_some_and(|v| v.starts_with(&**p)),
            Cmp::EndsWith(p) => value.is_some_and(|v| v.ends_with(&**p)),
            Cmp::Contains(p) => value.is_some_and(|v| v.contains(&**p)),
            Cmp::Lt(n) => number().is_some_and(|v| v < *n),
            Cmp::Lte(n) => number().is_some_and(|v| v <= *n),
            Cmp::Gt(n) => number().is_some_and(|v| v > *n),
            Cmp::Gte(n) => number().is_some_and(|v| v >= *n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
        FilterNode { key: key.into(), cmp: cmp.into(), val: val.into(), ..FilterNode::default() }
    }

    fn set(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            vals: vals.iter().map(|v| v.to_string()).collect(),
            ..FilterNode::default()
        }
    }

    fn logic(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode { op: op.into(), nodes, ..FilterNode::default() }
    }

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn check(node: FilterNode, pairs: &[(&str, &str)]) -> bool {
        TagFilter::compile(&node).expect("valid filter").matches(&tags(pairs))
    }

    #[test]
    fn comparisons_follow_their_definitions() {
        let t = [("ticker", "BTC"), ("price", "50000.5"), ("empty", "")];
        assert!(check(leaf("ticker", "eq", "BTC"), &t));
        assert!(!check(leaf("ticker", "eq", "ETH"), &t));
        assert!(!check(leaf("missing", "eq", ""), &t));
        assert!(check(leaf("empty", "eq", ""), &t));
        assert!(check(leaf("ticker", "neq", "ETH"), &t));
        assert!(!check(leaf("ticker", "neq", "BTC"), &t));
        assert!(check(leaf("missing", "neq", "BTC"), &t), "a missing tag is not equal");
        assert!(check(set("ticker", "in", &["ETH", "BTC"]), &t));
        assert!(!check(set("ticker", "in", &["ETH"]), &t));
        assert!(!check(set("missing", "in", &["BTC"]), &t));
        assert!(check(set("ticker", "nin", &["ETH"]), &t));
        assert!(!check(set("ticker", "nin", &["ETH", "BTC"]), &t));
        assert!(check(set("missing", "nin", &["BTC"]), &t));
        assert!(check(leaf("ticker", "ex", ""), &t));
        assert!(check(leaf("empty", "ex", ""), &t), "present though empty");
        assert!(!check(leaf("missing", "ex", ""), &t));
        assert!(check(leaf("missing", "nex", ""), &t));
        assert!(!check(leaf("ticker", "nex", ""), &t));
        assert!(check(leaf("ticker", "sw", "BT"), &t));
        assert!(check(leaf("ticker", "ew", "TC"), &t));
        assert!(check(leaf("ticker", "ct", "T"), &t));
        assert!(!check(leaf("ticker", "ct", "X"), &t));
        assert!(check(leaf("price", "gt", "50000"), &t));
        assert!(check(leaf("price", "gte", "50000.5"), &t));
        assert!(!check(leaf("price", "lt", "50000.5"), &t));
        assert!(check(leaf("price", "lte", "50000.5"), &t));
        assert!(!check(leaf("ticker", "gt", "0"), &t), "a non-numeric tag fails numeric comparisons");
        assert!(!check(leaf("missing", "lt", "1e9"), &t));
    }

    #[test]
    fn logic_combines_nodes() {
        let t = [("a", "1"), ("b", "2")];
        assert!(check(logic("and", vec![leaf("a", "eq", "1"), leaf("b", "eq", "2")]), &t));
        assert!(!check(logic("and", vec![leaf("a", "eq", "1"), leaf("b", "eq", "3")]), &t));
        assert!(check(logic("or", vec![leaf("a", "eq", "9"), leaf("b", "eq", "2")]), &t));
        assert!(!check(logic("or", vec![leaf("a", "eq", "9"), leaf("b", "eq", "9")]), &t));
        assert!(check(logic("not", vec![leaf("a", "eq", "9")]), &t));
        assert!(!check(logic("not", vec![logic("or", vec![leaf("a", "eq", "1")])]), &t));
    }

    #[test]
    fn invalid_filters_are_refused_with_a_reason() {
        let err = |n: FilterNode| TagFilter::compile(&n).unwrap_err();
        assert_eq!(err(leaf("a", "like", "x")), FilterError::UnknownCmp("like".into()));
        assert_eq!(err(leaf("a", "", "x")), FilterError::UnknownCmp(String::new()));
        assert_eq!(err(leaf("", "eq", "x")), FilterError::MissingKey);
        assert_eq!(err(logic("xor", vec![leaf("a", "eq", "1")])), FilterError::UnknownOp("xor".into()));
        assert_eq!(err(logic("and", vec![])), FilterError::EmptyLogic("and".into()));
        assert_eq!(err(logic("not", vec![leaf("a", "ex", ""), leaf("b", "ex", "")])), FilterError::NotArity);
        assert_eq!(err(set("a", "in", &[])), FilterError::MissingVals("in".into()));
        assert_eq!(err(leaf("a", "gt", "ten")), FilterError::NotANumber("gt".into(), "ten".into()));
        assert_eq!(err(leaf("a", "gt", "NaN")), FilterError::NotANumber("gt".into(), "NaN".into()));
        let mut with_key = logic("and", vec![leaf("a", "ex", "")]);
        with_key.key = "a".into();
        assert_eq!(err(with_key), FilterError::LogicWithLeafFields("and".into()));
        let mut leaf_with_nodes = leaf("a", "eq", "1");
        leaf_with_nodes.nodes = vec![leaf("b", "eq", "1")];
        assert_eq!(err(leaf_with_nodes), FilterError::LeafWithNodes);
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut deep = leaf("a", "ex", "");
        for _ in 1..MAX_FILTER_DEPTH {
            deep = logic("not", vec![deep]);
        }
        assert!(TagFilter::compile(&deep).is_ok(), "exactly the maximum depth");
        assert_eq!(TagFilter::compile(&logic("not", vec![deep])).unwrap_err(), FilterError::TooDeep);
        let wide = logic("or", (0..MAX_FILTER_NODES).map(|i| leaf(&format!("k{i}"), "ex", "")).collect());
        assert_eq!(TagFilter::compile(&wide).unwrap_err(), FilterError::TooManyNodes);
        let values: Vec<String> = (0..MAX_FILTER_VALUES).map(|i| i.to_string()).collect();
        let many = FilterNode { key: "a".into(), cmp: "in".into(), vals: values, ..FilterNode::default() };
        assert_eq!(TagFilter::compile(&many).unwrap_err(), FilterError::TooManyValues);
    }

    fn arb_filter() -> impl Strategy<Value = FilterNode> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let value = prop::sample::select(vec!["1", "2", "x", ""]);
        let leaf = (key, prop::sample::select(vec!["eq", "neq", "in", "nin", "ex", "nex", "gt", "lte", "sw"]), value)
            .prop_map(|(k, cmp, v)| match cmp {
                "in" | "nin" => set(k, cmp, &[v, "2"]),
                "gt" | "lte" => leaf(k, cmp, "1"),
                _ => leaf(k, cmp, v),
            });
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(|n| logic("and", n)),
                prop::collection::vec(inner.clone(), 1..3).prop_map(|n| logic("or", n)),
                inner.prop_map(|n| logic("not", vec![n])),
            ]
        })
    }

    /// The reference semantics, straight from the definitions, on the
    /// uncompiled tree.
    fn reference(node: &FilterNode, tags: &HashMap<String, String>) -> bool {
        match node.op.as_str() {
            "and" => node.nodes.iter().all(|n| reference(n, tags)),
            "or" => node.nodes.iter().any(|n| reference(n, tags)),
            "not" => !reference(&node.nodes[0], tags),
            _ => {
                let v = tags.get(&node.key);
                let num = v.and_then(|v| v.parse::<f64>().ok());
                let want: f64 = node.val.parse().unwrap_or(f64::NAN);
                match node.cmp.as_str() {
                    "eq" => v == Some(&node.val),
                    "neq" => v != Some(&node.val),
                    "in" => v.is_some_and(|v| node.vals.contains(v)),
                    "nin" => !v.is_some_and(|v| node.vals.contains(v)),
                    "ex" => v.is_some(),
                    "nex" => v.is_none(),
                    "gt" => num.is_some_and(|n| n > want),
                    "lte" => num.is_some_and(|n| n <= want),
                    "sw" => v.is_some_and(|v| v.starts_with(&node.val)),
                    other => unreachable!("{other}"),
                }
            }
        }
    }

    proptest! {
        #[test]
        fn compiled_filters_agree_with_the_reference(
            node in arb_filter(),
            pairs in prop::collection::hash_map(prop::sample::select(vec!["a", "b", "c"]), prop::sample::select(vec!["1", "2", "x", ""]), 0..3),
        ) {
            let tags: HashMap<String, String> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let filter = TagFilter::compile(&node).expect("generated filters are valid");
            prop_assert_eq!(filter.matches(&tags), reference(&node, &tags));
        }
    }
}
