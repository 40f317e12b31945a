//! A list of a cell's metadata that its holders share instead of copying.
//!
//! A cell's sections and symbols are written once, when it is loaded, and read by the registry
//! and by the hosted debuggers' table, which keeps the metadata of every published cell for
//! backtraces and profilers. Copying the lists for the table cost every symbol's name a reference
//! count increment at load and a decrement at unload, and two allocations (7 % of a large cell's
//! load, measured): a [`SharedList`] is cloned by taking one reference to the whole list.
//! Changing a list that another holder shares copies it first ([`Arc::make_mut`]), so a holder
//! never sees another's change. Build a long list as a `Vec` and convert it once
//! ([`From<Vec<T>>`]): every mutable access checks, atomically, whether the list is shared.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `Vec<T>` shared by its clones; reads as the `Vec`, copied on the first change while shared.
#[derive(PartialEq, Eq)]
pub struct SharedList<T>(Arc<Vec<T>>);

impl<T> SharedList<T> {
    /// An empty list.
    pub fn new() -> SharedList<T> {
        SharedList(Arc::new(Vec::new()))
    }
}

impl<T> Clone for SharedList<T> {
    fn clone(&self) -> SharedList<T> {
        SharedList(Arc::clone(&self.0))
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> SharedList<T> {
        SharedList::new()
    }
}

impl<T> From<Vec<T>> for SharedList<T> {
    fn from(list: Vec<T>) -> SharedList<T> {
        SharedList(Arc::new(list))
    }
}

impl<T> FromIterator<T> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> SharedList<T> {
        SharedList::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T> Deref for SharedList<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> DerefMut for SharedList<T> {
    /// The list to change: this holder's own, copied first if another holder shares it.
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a, T> IntoIterator for &'a SharedList<T> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SharedList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedList<T>, D::Error> {
        Vec::deserialize(deserializer).map(SharedList::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    #[test]
    fn a_clone_shares_the_list_until_one_holder_changes_it() {
        let mut a = SharedList::from(vec![1, 2, 3]);
        let b = a.clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "a clone is the same list");
        a.push(4);
        assert_ne!(a.as_ptr(), b.as_ptr(), "the change copied the list");
        assert_eq!(*a, vec![1, 2, 3, 4]);
        assert_eq!(
            *b,
            vec![1, 2, 3],
            "the other holder does not see the change"
        );
        let mut room = Vec::with_capacity(4);
        room.push(7);
        let mut alone = SharedList::from(room);
        let before = alone.as_ptr();
        alone.push(8);
        alone.truncate(1);
        assert_eq!(
            alone.as_ptr(),
            before,
            "a list nobody shares changes in place"
        );
    }

    #[test]
    fn it_serializes_as_the_list_it_holds() {
        let list = SharedList::from(vec![String::from("a"), String::from("b")]);
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(text, serde_json::to_string(&vec!["a", "b"]).unwrap());
        let back: SharedList<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, list);
    }
}
