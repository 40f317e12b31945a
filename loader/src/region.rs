//! The four regions of a cell's mapping, and spans of it: what the layout plans, what the mapping
//! protects, and what the rest of the loader asks where an address lies. A leaf: it depends on
//! nothing else of the loader.

/// The four regions of a cell's mapping, in address order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Code and call stubs: read and execute.
    Text,
    /// Read-only data, `.eh_frame`, the `.tdata` image: read only.
    ReadOnly,
    /// `.data.rel.ro`, `.init_array`, the GOT: read only but inside a relro write window.
    RelRo,
    /// `.data`, `.bss`: read and write.
    Data,
}

impl Region {
    /// Every region, in address order.
    pub(crate) const ALL: [Region; 4] =
        [Region::Text, Region::ReadOnly, Region::RelRo, Region::Data];
}

/// A range of a cell's mapping: an offset from its start and a length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// Offset from the start of the mapping.
    pub(crate) offset: usize,
    /// Length in bytes.
    pub(crate) len: usize,
}

impl Span {
    /// One past the last byte. The layout made it, so it does not overflow.
    pub(crate) fn end(self) -> usize {
        self.offset + self.len
    }
}

/// Where each region of a cell's mapping is: page-aligned spans that follow each other from
/// offset 0, in [`Region::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Regions {
    /// Code and call stubs.
    pub(crate) text: Span,
    /// Read-only data.
    pub(crate) read_only: Span,
    /// Relocated read-only data and the GOT.
    pub(crate) relro: Span,
    /// Writable data.
    pub(crate) data: Span,
}

impl Regions {
    /// The span of region `r`.
    pub(crate) fn get(&self, r: Region) -> Span {
        match r {
            Region::Text => self.text,
            Region::ReadOnly => self.read_only,
            Region::RelRo => self.relro,
            Region::Data => self.data,
        }
    }

    /// Sets the span of region `r`.
    pub(crate) fn set(&mut self, r: Region, span: Span) {
        match r {
            Region::Text => self.text = span,
            Region::ReadOnly => self.read_only = span,
            Region::RelRo => self.relro = span,
            Region::Data => self.data = span,
        }
    }

    /// The length of the whole mapping: the end of the last region.
    pub(crate) fn total(&self) -> usize {
        self.data.end()
    }

    /// What is mapped for them with pages of `page` bytes: [`Regions::total`] rounded up to whole
    /// pages, at least one; `None` when the rounding does not fit.
    pub(crate) fn mapped_len(&self, page: usize) -> Option<usize> {
        Some(self.total().checked_next_multiple_of(page)?.max(page))
    }
}
