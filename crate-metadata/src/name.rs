//! [`Name`]: a section's or symbol's name, a slice of a string shared by all the names of one
//! cell, so that describing a cell of thousands of sections makes one allocation for their names
//! instead of one per name (and dropping it frees one).

use alloc::string::String;
use alloc::sync::Arc;
use core::borrow::Borrow;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable name: `len` bytes at `start` of a shared string. It reads, compares, hashes,
/// prints and serializes exactly as the `str` it holds; cloning it copies no bytes.
#[derive(Clone)]
pub struct Name {
    /// An `Arc<String>`, not an `Arc<str>`: finishing an arena moves its string into the `Arc`
    /// instead of copying every name of the cell once more (measured: 11 K instructions of a
    /// `memfs` load went to that copy), and the pointer is thin.
    text: Arc<String>,
    start: u32,
    len: u32,
}

impl Name {
    /// The name `span` of the string this one is a slice of (pushed into the same
    /// [`NameArena`]): read without a reference of its own. `None` when the span does not lie on
    /// character boundaries of that string.
    pub fn sibling(&self, span: NameSpan) -> Option<&str> {
        let start = span.start as usize;
        self.text.get(start..start + span.len as usize)
    }

    /// The name as a `str`.
    pub fn as_str(&self) -> &str {
        // `start..start + len` was checked to lie on character boundaries of `text` when the
        // name was made; `get` keeps this free of panics all the same.
        let (start, end) = (self.start as usize, self.start as usize + self.len as usize);
        self.text.get(start..end).unwrap_or_default()
    }
}

/// Builds the names of one cell in one shared string: [`NameArena::push`] each name, then
/// [`NameArena::finish`] and [`NameArena::name`] for each pushed range.
#[derive(Debug, Default)]
pub struct NameArena {
    text: String,
}

/// A name pushed into a [`NameArena`], to be turned into a [`Name`] once the arena is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameSpan {
    start: u32,
    len: u32,
}

/// A [`NameArena`] that is finished: every pushed span can be made a [`Name`].
#[derive(Debug)]
pub struct Names {
    text: Arc<String>,
}

impl NameArena {
    /// An arena with room for `bytes` bytes of names.
    pub fn with_capacity(bytes: usize) -> NameArena {
        NameArena {
            text: String::with_capacity(bytes),
        }
    }

    /// Appends `name`; `None` when the arena would grow past `u32::MAX` bytes.
    pub fn push(&mut self, name: &str) -> Option<NameSpan> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(name.len()).ok()?;
        start.checked_add(len)?;
        self.text.push_str(name);
        Some(NameSpan { start, len })
    }

    /// Appends the decimal digits of `n` (the name of a section that has none); `None` as for
    /// [`NameArena::push`].
    pub fn push_number(&mut self, n: usize) -> Option<NameSpan> {
        let start = u32::try_from(self.text.len()).ok()?;
        fmt::Write::write_fmt(&mut self.text, format_args!("{n}")).ok()?;
        let len = u32::try_from(self.text.len()).ok()? - start;
        Some(NameSpan { start, len })
    }

    /// The shared string, from which the pushed spans become names.
    pub fn finish(self) -> Names {
        Names {
            text: Arc::new(self.text),
        }
    }
}

impl NameSpan {
    /// Where the name starts in its string, in bytes.
    pub fn start(self) -> u32 {
        self.start
    }

    /// Its length in bytes.
    pub fn len(self) -> u32 {
        self.len
    }

    /// Whether the name is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

impl Names {
    /// The string `text` made whole, its names to be taken with [`Names::span`]: for names laid
    /// out ahead (a cell's `.cell.names`), copied in one piece instead of pushed one by one.
    pub fn from_text(text: String) -> Names {
        Names {
            text: Arc::new(text),
        }
    }

    /// The whole string.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The span of `len` bytes at `start`, when it lies inside the string on character
    /// boundaries (what [`NameArena::push`] gives for a name it appended).
    pub fn span(&self, start: u32, len: u32) -> Option<NameSpan> {
        let end = (start as usize).checked_add(len as usize)?;
        (self.text.is_char_boundary(start as usize) && self.text.is_char_boundary(end))
            .then_some(NameSpan { start, len })
    }

    /// The name `span` pushed before [`NameArena::finish`].
    pub fn name(&self, span: NameSpan) -> Name {
        Name {
            text: Arc::clone(&self.text),
            start: span.start,
            len: span.len,
        }
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::from(String::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        // A longer name cannot come from an object (its string tables are smaller); cut it rather
        // than fail, at a character boundary.
        let mut len = s.len().min(u32::MAX as usize);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        Name {
            text: Arc::new(s),
            start: 0,
            len: len as u32,
        }
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::from(s.as_str())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.as_str().into()
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a map keyed by `Name` is looked up by `&str`.
        self.as_str().hash(state)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        String::deserialize(deserializer).map(Name::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn names_of_one_arena_share_its_string_and_read_back() {
        let mut arena = NameArena::with_capacity(16);
        let a = arena.push(".text.f").unwrap();
        let b = arena.push_number(42).unwrap();
        let c = arena.push("").unwrap();
        let names = arena.finish();
        let (a, b, c) = (names.name(a), names.name(b), names.name(c));
        assert_eq!(a, ".text.f");
        assert_eq!(b.as_str(), "42");
        assert_eq!(c, "");
        assert!(Arc::ptr_eq(&a.text, &b.text));
        assert_eq!(a.to_string(), ".text.f");
        assert_eq!(alloc::format!("{a:?}"), "\".text.f\"");
    }

    #[test]
    fn names_laid_out_ahead_are_taken_by_checked_spans() {
        let names = Names::from_text(String::from(".textλx"));
        assert_eq!(names.text(), ".textλx");
        let text = names.span(0, 5).unwrap();
        assert_eq!((text.start(), text.len()), (0, 5));
        assert_eq!(names.name(text), ".text");
        assert_eq!(names.name(names.span(5, 2).unwrap()), "λ");
        assert!(names.span(6, 1).is_none(), "inside a character");
        assert!(names.span(8, 1).is_none(), "past the end");
        assert!(names.span(u32::MAX, 2).is_none());
        assert!(names.span(8, 0).unwrap().is_empty());
    }

    #[test]
    fn a_name_hashes_and_compares_as_its_str() {
        let mut map = hashbrown::HashMap::new();
        map.insert(Name::from("klog::push"), 1);
        assert_eq!(map.get("klog::push"), Some(&1));
        let (a, b) = (Name::from("a"), Name::from("b"));
        assert!(a < b && b.cmp(&a).is_gt());
        let json = serde_json::to_string(&Name::from("x\"y")).unwrap();
        assert_eq!(json, "\"x\\\"y\"");
        let back: Name = serde_json::from_str(&json).unwrap();
        assert_eq!(back, "x\"y");
    }
}
