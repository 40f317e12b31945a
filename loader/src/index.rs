//! Typed indices into an object's tables: a section header index and a symbol table index are
//! both plain numbers in ELF, and mixing them up is a bug the compiler should catch. Vectors that
//! hold one entry per section or per symbol are [`IndexVec`]s keyed by the matching index.

use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Index, IndexMut};

/// An index into a table of the object.
pub trait Idx: Copy {
    /// The index of position `i`.
    fn new(i: usize) -> Self;
    /// The position.
    fn index(self) -> usize;
}

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);

        impl Idx for $name {
            #[inline]
            fn new(i: usize) -> Self {
                $name(i)
            }
            #[inline]
            fn index(self) -> usize {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "#{}"), self.0)
            }
        }
    };
}

index_type!(
    /// The index of a section header (`st_shndx` of a symbol in a real section, `sh_info` of a
    /// relocation section).
    SectionIndex,
    "section"
);

index_type!(
    /// The index of a symbol in the object's symbol table (`r_sym` of a relocation; entry 0 is
    /// the null symbol).
    SymbolIndex,
    "symbol"
);

/// A vector with one entry per index of type `I`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IndexVec<I, T> {
    items: Vec<T>,
    _index: PhantomData<fn(I)>,
}

impl<I: Idx, T> IndexVec<I, T> {
    /// `n` copies of `value`.
    pub(crate) fn from_elem(value: T, n: usize) -> Self
    where
        T: Clone,
    {
        IndexVec::from_vec(alloc::vec![value; n])
    }

    /// The vector whose entry `I::new(i)` is `items[i]`.
    pub(crate) fn from_vec(items: Vec<T>) -> Self {
        IndexVec {
            items,
            _index: PhantomData,
        }
    }

    /// The number of entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The entry at `i`, if there is one.
    #[inline]
    pub(crate) fn get(&self, i: I) -> Option<&T> {
        self.items.get(i.index())
    }

    /// The entry at `i`, mutably, if there is one.
    pub(crate) fn get_mut(&mut self, i: I) -> Option<&mut T> {
        self.items.get_mut(i.index())
    }

    /// The entries in index order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The entries, mutably, in index order.
    pub(crate) fn items_mut(&mut self) -> core::slice::IterMut<'_, T> {
        self.items.iter_mut()
    }

    /// The entries with their indices, in index order.
    pub(crate) fn iter_enumerated(&self) -> impl Iterator<Item = (I, &T)> + '_ {
        self.items.iter().enumerate().map(|(i, t)| (I::new(i), t))
    }
}

impl<I: Idx, T> Index<I> for IndexVec<I, T> {
    type Output = T;
    #[inline]
    fn index(&self, i: I) -> &T {
        &self.items[i.index()]
    }
}

impl<I: Idx, T> IndexMut<I> for IndexVec<I, T> {
    #[inline]
    fn index_mut(&mut self, i: I) -> &mut T {
        &mut self.items[i.index()]
    }
}

impl<I, T: fmt::Debug> fmt::Debug for IndexVec<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_their_own_index_type() {
        let mut v: IndexVec<SymbolIndex, u32> = IndexVec::from_elem(0, 3);
        v[SymbolIndex(2)] = 7;
        assert_eq!(v.get(SymbolIndex(2)), Some(&7));
        assert_eq!(v.get(SymbolIndex(3)), None);
        assert_eq!(v.len(), 3);
        let found: Vec<(SymbolIndex, u32)> = v.iter_enumerated().map(|(i, t)| (i, *t)).collect();
        assert_eq!(found[2], (SymbolIndex(2), 7));
        assert_eq!(alloc::format!("{}", SectionIndex(4)), "section#4");
    }
}
