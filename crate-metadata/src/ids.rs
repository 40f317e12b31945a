//! Typed ids. Every object of the model is named by one of these, never by a pointer, so the
//! whole graph serializes and a swap finds every dependent by index.

use core::fmt;
use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The id as an index into the vector that holds the objects it names.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A cell in the [`crate::Registry`]. Ids are never reused while the registry lives.
    CellId,
    "cell#"
);
id!(
    /// A section of one cell: an index into [`crate::Cell::sections`].
    SectionId,
    "section#"
);
id!(
    /// A symbol of one cell: an index into [`crate::Cell::symbols`].
    SymbolId,
    "symbol#"
);
id!(
    /// An edge in the [`crate::Registry`].
    EdgeId,
    "edge#"
);
id!(
    /// A namespace.
    NamespaceId,
    "ns#"
);
