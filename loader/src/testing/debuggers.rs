//! A [`Debuggers`] that records what the loader tells it, for the tests of when cells are
//! registered with debuggers and profilers and when they are dropped.

use alloc::string::String;
use alloc::vec::Vec;
use std::sync::Mutex;

use crate::platform::{CellImage, Debuggers};
use crate_metadata::{CellId, CellState};

/// One call the loader made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `cell_published`, or `cell_changed` when `published` is false.
    Told {
        published: bool,
        cell: CellId,
        base: u64,
        namespace: String,
        state: CellState,
        /// How many functions the cell has and whether the text range holds them all.
        functions: usize,
        in_text: bool,
    },
    /// `cell_released`.
    Released { base: u64 },
}

/// Records every call.
#[derive(Default)]
pub(crate) struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// The calls so far, taken.
    pub(crate) fn take(&self) -> Vec<Event> {
        core::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }

    fn told(&self, published: bool, image: &CellImage<'_>) {
        let functions = image.cell.functions();
        self.push(Event::Told {
            published,
            cell: image.cell.id,
            base: image.cell.base_addr,
            namespace: image.namespace.into(),
            state: image.cell.state,
            functions: functions.len(),
            in_text: functions
                .iter()
                .all(|f| image.text.contains(f.addr) && f.addr + f.size <= image.text.end),
        });
    }
}

impl Debuggers for Recorder {
    fn cell_published(&self, image: &CellImage<'_>) {
        self.told(true, image);
    }

    fn cell_changed(&self, image: &CellImage<'_>) {
        self.told(false, image);
    }

    fn cell_released(&self, base: u64) {
        self.push(Event::Released { base });
    }
}
