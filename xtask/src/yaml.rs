//! A YAML document tree that keeps a source position on every node and every mapping key.
//!
//! Built from `saphyr-parser`'s event stream (a maintained YAML 1.2 parser that reports spans; the
//! popular `serde_yaml` is deprecated and loses positions). We keep the tree untyped on purpose:
//! the buildspec and template readers decide what a scalar means (CodeBuild reads `yes`/`no` as
//! booleans, YAML 1.2 does not), and duplicate keys stay visible so the linter can report them.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as EventSpan, StrInput};

/// Deeper nesting than this is rejected instead of recursing without bound on hostile input.
const MAX_DEPTH: usize = 200;
/// More nodes than this, counting each alias and merge as the copy it makes, are rejected: a few
/// hundred bytes of nested aliases ("billion laughs") would otherwise expand without bound.
pub const MAX_NODES: usize = 1_000_000;

/// A position in a source file: 1-based line and column (in characters), 0-based byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub offset: usize,
}

impl Default for Pos {
    /// The start of the file.
    fn default() -> Self {
        Pos {
            line: 1,
            col: 1,
            offset: 0,
        }
    }
}

/// A byte range of the source with the positions of both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end.offset.saturating_sub(self.start.offset)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
    /// A local tag such as `!Ref` (CloudFormation short form), without the leading `!`.
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in source order; duplicates are kept so callers can report them.
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Quoted and block scalars are always strings; only plain ones can be null, bool or number.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if !self.is_null() => Some(&s.text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// `~`, `null` or nothing at all, unquoted.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.plain && self.tag.is_none()
            && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The first entry under `key`, if this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key.as_str() == Some(key))
            .map(|e| &e.value)
    }

    /// What a reader would call this node in a "expected X, found Y" message.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar(_) if self.is_null() => "nothing (null)",
            Value::Scalar(s) if s.plain && is_yaml_number(&s.text) => "a number",
            Value::Scalar(s) if s.plain && matches!(s.text.as_str(), "true" | "false") => {
                "a boolean"
            }
            Value::Scalar(_) => "a string",
        }
    }
}

fn is_yaml_number(text: &str) -> bool {
    text.parse::<f64>().is_ok() && !text.eq_ignore_ascii_case("nan") && !text.contains("inf")
}

/// A YAML syntax error with the position the parser stopped at.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

/// Parses every document of `text`. An empty file yields no documents.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        offsets: CharOffsets::new(text),
        anchors: HashMap::new(),
        nodes: 0,
    };
    builder.documents()
}

/// saphyr reports character indices; diagnostics and snippets need byte offsets. Line and column
/// are derived from the offset (lines end at `\n` only), so all three always agree.
struct CharOffsets {
    byte_of_char: Vec<usize>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    text_len: usize,
    chars_before_line: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut byte_of_char: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        byte_of_char.push(text.len());
        let mut line_starts = vec![0];
        let mut chars_before_line = vec![0];
        for (chars, (b, c)) in text.char_indices().enumerate() {
            if c == '\n' {
                line_starts.push(b + 1);
                chars_before_line.push(chars + 1);
            }
        }
        CharOffsets {
            byte_of_char,
            line_starts,
            text_len: text.len(),
            chars_before_line,
        }
    }

    fn pos(&self, marker: &saphyr_parser::Marker) -> Pos {
        let last = self.byte_of_char.len() - 1;
        let char_index = marker.index().min(last);
        let offset = self.byte_of_char[char_index].min(self.text_len);
        let line = self.line_starts.partition_point(|start| *start <= offset);
        Pos {
            line,
            col: char_index - self.chars_before_line[line - 1] + 1,
            offset,
        }
    }

    fn span(&self, span: &EventSpan) -> Span {
        Span {
            start: self.pos(&span.start),
            end: self.pos(&span.end),
        }
    }
}

struct Builder<'a> {
    parser: Parser<'a, StrInput<'a>>,
    offsets: CharOffsets,
    /// Each anchored node, with its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes made so far, copies included.
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => Ok((event, self.offsets.span(&span))),
            Some(Err(e)) => Err(SyntaxError {
                message: e.info().to_string(),
                pos: self.offsets.pos(e.marker()),
            }),
            None => Err(SyntaxError {
                message: "unexpected end of input".into(),
                pos: Pos::default(),
            }),
        }
    }

    fn documents(&mut self) -> Result<Vec<Node>, SyntaxError> {
        let mut docs = Vec::new();
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart(_) => {
                    let (event, span) = self.next()?;
                    docs.push(self.node(event, span, 0)?);
                }
                other => return Err(unexpected(&other, span)),
            }
        }
    }

    /// Counts `count` more nodes; past [`MAX_NODES`] the document is refused.
    fn count(&mut self, count: usize, at: Pos) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(count);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (through aliases?): refused"
                ),
                pos: at,
            });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
                pos: span.start,
            });
        }
        if !matches!(event, Event::Alias(_)) {
            self.count(1, span.start)?;
        }
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let scalar = Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                };
                let node = Node {
                    value: Value::Scalar(scalar),
                    span,
                    tag: tag.map(|t| local_tag(&t)),
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                let end = loop {
                    let (event, item_span) = self.next()?;
                    if event == Event::SequenceEnd {
                        break item_span.end;
                    }
                    items.push(self.node(event, item_span, depth + 1)?);
                };
                let node = Node {
                    value: Value::Seq(items),
                    span: Span {
                        start: span.start,
                        end,
                    },
                    tag: tag.map(|t| local_tag(&t)),
                };
                (node, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let mut entries = Vec::new();
                let mut merged = Vec::new();
                let end = loop {
                    let (event, key_span) = self.next()?;
                    if event == Event::MappingEnd {
                        break key_span.end;
                    }
                    let key = self.node(event, key_span, depth + 1)?;
                    let (event, value_span) = self.next()?;
                    let value = self.node(event, value_span, depth + 1)?;
                    if is_merge_key(&key) && !matches!(value.value, Value::Scalar(_)) {
                        merged.push(value);
                    } else {
                        entries.push(Entry { key, value });
                    }
                };
                let copied = apply_merges(&mut entries, &merged);
                self.count(copied, span.start)?;
                let node = Node {
                    value: Value::Map(entries),
                    span: Span {
                        start: span.start,
                        end,
                    },
                    tag: tag.map(|t| local_tag(&t)),
                };
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some((_, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        message: "alias refers to an unknown anchor".into(),
                        pos: span.start,
                    });
                };
                self.count(*size, span.start)?;
                return Ok(self.anchors[&id].0.clone());
            }
            other => return Err(unexpected(&other, span)),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        Ok(node)
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar(s) if s.plain && s.text == "<<")
}

/// How many nodes `node` is made of (itself included).
fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar(_) => 0,
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|e| size(&e.key) + size(&e.value)).sum(),
    }
}

/// Expands YAML merge keys (`<<: *defaults`) the way YAML 1.1 loaders do: merged entries never
/// override keys written out in the mapping itself, and earlier sources win over later ones.
/// Returns how many nodes it copied.
fn apply_merges(entries: &mut Vec<Entry>, merged: &[Node]) -> usize {
    let mut copied = 0;
    let sources = merged.iter().flat_map(|node| match &node.value {
        Value::Seq(items) => items.iter().collect::<Vec<_>>(),
        _ => vec![node],
    });
    for source in sources {
        for entry in source.as_map().unwrap_or_default() {
            let present = entries.iter().any(|e| e.key.as_str() == entry.key.as_str());
            if !present {
                copied += size(&entry.key) + size(&entry.value);
                entries.push(entry.clone());
            }
        }
    }
    copied
}

fn local_tag(tag: &saphyr_parser::Tag) -> String {
    if tag.handle == "!" {
        tag.suffix.clone()
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

fn unexpected(event: &Event<'_>, span: Span) -> SyntaxError {
    SyntaxError {
        message: format!("unexpected YAML event {event:?}"),
        pos: span.start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        parse(text).expect("valid yaml").remove(0)
    }

    #[test]
    fn keys_and_values_carry_line_and_column() {
        let root = doc("version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n");
        let entry = &root.as_map().unwrap()[1];
        assert_eq!(
            (entry.key.span.start.line, entry.key.span.start.col),
            (2, 1)
        );
        let cmd = &root
            .get("phases")
            .unwrap()
            .get("build")
            .unwrap()
            .get("commands")
            .unwrap();
        let first = &cmd.as_seq().unwrap()[0];
        assert_eq!(first.as_str(), Some("echo hi"));
        assert_eq!((first.span.start.line, first.span.start.col), (5, 9));
    }

    #[test]
    fn byte_offsets_survive_multibyte_characters() {
        let text = "a: \"é\"\nb: x\n";
        let root = doc(text);
        let b = &root.as_map().unwrap()[1].value;
        assert_eq!(&text[b.span.start.offset..b.span.end.offset], "x");
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let root = doc("a: 1\na: 2\n");
        assert_eq!(root.as_map().unwrap().len(), 2);
    }

    #[test]
    fn plain_and_quoted_scalars_differ() {
        let root = doc("a: null\nb: 'null'\nc:\n");
        assert!(root.get("a").unwrap().is_null());
        assert!(!root.get("b").unwrap().is_null());
        assert!(root.get("c").unwrap().is_null());
    }

    #[test]
    fn short_tags_parse() {
        let root = doc("A: !Ref Param\nB: !GetAtt [X, Arn]\nC: !Sub '${AWS::Region}'\n");
        assert_eq!(root.get("A").unwrap().tag.as_deref(), Some("Ref"));
        assert_eq!(root.get("B").unwrap().tag.as_deref(), Some("GetAtt"));
        assert_eq!(root.get("C").unwrap().as_str(), Some("${AWS::Region}"));
    }

    #[test]
    fn nested_aliases_cannot_expand_without_bound() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
        assert!(text.len() < 1000);
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let root = doc("base: &b {x: 1, y: 2}\nuse: *b\nmerged:\n  <<: *b\n  y: 3\n");
        assert_eq!(
            root.get("use").unwrap().get("x").unwrap().as_str(),
            Some("1")
        );
        let merged = root.get("merged").unwrap();
        assert_eq!(merged.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(merged.get("y").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err}");
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        let text = "[".repeat(100_000);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn empty_input_has_no_documents() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only a comment\n").unwrap().is_empty());
    }
}
