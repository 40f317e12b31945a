//! Thread-locals across a swap: the new version takes the old version's TLS module over, so every
//! thread keeps its values.
//!
//! A cell's `thread_local!`s live in blocks of the TLS module the loader made for it, one block
//! per thread, found through the module id in the cell's own GOT (its `TLSLD` pair and the
//! `TLSGD` pairs of its own thread-locals). When the new version's thread-local storage has the
//! old one's layout — the same block size and alignment, the same `.tdata`/`.tbss` sections (their
//! names carry each variable's mangled name, whose hash covers its type) of the same sizes — those
//! GOT words of the new version get the old module's id: the new code reads and writes the very
//! blocks the old code used, as a rebound static is the very memory of the old one. The module's
//! template becomes the new version's `.tdata`, so a thread that starts after the swap sees the new
//! version's initial values. A layout that changed is refused unless the swap asks for fresh
//! thread-locals (`SwapOptions::fresh_thread_locals`): the new version then keeps its own module,
//! and every thread starts from its initial values.

use alloc::vec::Vec;

use super::undo::{SlotValue, Undo};
use super::{Pair, SwapError, SwapOptions};
use crate::mapping::permissions::SlotOutside;
use crate::platform::Platform;
use crate::system::{System, TlsImage};
use crate_metadata::{Cell, SectionKind};

/// What a swap does with one pair's thread-locals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TlsPlan {
    /// The old version has none, or the new one uses none: nothing to do.
    Nothing,
    /// Fresh (asked for): the new version keeps its own module, or, a retired version reused that
    /// gave its module to its successor, gets a new one from its template.
    Fresh {
        own: Option<u64>,
        template: TlsImage,
    },
    /// The new version takes over `module` (the old version's), with its own `template`;
    /// `own` is the module the new version was loaded with, if it still has one.
    Carry {
        module: u64,
        own: Option<u64>,
        template: TlsImage,
    },
}

/// What happened to a cell's thread-locals in a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    /// Every thread kept its values: the new version uses the old version's blocks.
    Carried,
    /// Every thread starts from the new version's initial values (asked for).
    Fresh,
}

/// The thread-local sections of a cell: name, size, alignment, in order.
fn tls_sections(cell: &Cell) -> Vec<(&str, u64, u64)> {
    cell.sections
        .iter()
        .filter(|s| matches!(s.kind, SectionKind::TlsData | SectionKind::TlsBss))
        .map(|s| (s.name.as_str(), s.size, s.align))
        .collect()
}

impl<P: Platform> System<P> {
    /// Decides what happens to the thread-locals of `p`. Changes nothing.
    pub(super) fn plan_thread_locals(
        &self,
        p: &Pair,
        options: &SwapOptions,
    ) -> Result<TlsPlan, SwapError> {
        let (Some(old), Some(new)) = (self.mapped.get(&p.old), self.mapped.get(&p.new)) else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        let (Some(module), Some(template)) = (old.tls_module, new.tls_template) else {
            return Ok(TlsPlan::Nothing);
        };
        if options.fresh_thread_locals {
            return Ok(TlsPlan::Fresh {
                own: new.tls_module,
                template,
            });
        }
        let (Some(old_cell), Some(new_cell)) =
            (self.registry.cell(p.old), self.registry.cell(p.new))
        else {
            return Err(SwapError::NoSuchCell(p.old));
        };
        let old_template = old.tls_template;
        let same = old_template.is_some_and(|t| {
            t.size == template.size && t.align == template.align && t.init_len == template.init_len
        }) && tls_sections(old_cell) == tls_sections(new_cell);
        if !same {
            let sizes = |t: Option<TlsImage>| t.map_or((0, 0), |t| (t.size as u64, t.align as u64));
            return Err(SwapError::ThreadLocalsChanged {
                cell: new_cell.name.clone(),
                old: sizes(old_template),
                new: sizes(Some(template)),
            });
        }
        Ok(TlsPlan::Carry {
            module,
            own: new.tls_module,
            template,
        })
    }

    /// Points the new version's TLS GOT words at the old version's module and gives the module the
    /// new version's template (both recorded in `undo`); for fresh thread-locals of a version that
    /// has no module of its own any more, makes it one. Returns the plan as it now stands.
    pub(super) fn apply_thread_locals(
        &mut self,
        p: &Pair,
        plan: TlsPlan,
        undo: &mut Undo,
    ) -> Result<TlsPlan, SwapError> {
        let (module, template) = match plan {
            TlsPlan::Nothing | TlsPlan::Fresh { own: Some(_), .. } => return Ok(plan),
            TlsPlan::Fresh {
                own: None,
                template,
            } => {
                // SAFETY: the template's image is the new version's `.tdata`, in its mapping,
                // which outlives the module (destroyed when the cell is released, or by the undo).
                let made = unsafe { self.platform.create_module(template.template()) }.map_err(
                    |error| SwapError::Platform {
                        cell: self.name_of(p.new),
                        error,
                    },
                )?;
                undo.modules.push(made);
                self.point_tls_slots(p, made, undo)?;
                return Ok(TlsPlan::Fresh {
                    own: Some(made),
                    template,
                });
            }
            TlsPlan::Carry {
                module, template, ..
            } => (module, template),
        };
        self.point_tls_slots(p, module, undo)?;
        let cell = self.name_of(p.new);
        // SAFETY: the template's image is the new version's `.tdata`, in its mapping, which stays
        // mapped while it owns the module (after the commit) or until the undo gives the module
        // its old template back.
        let before = unsafe { self.platform.replace_template(module, template.template()) }
            .map_err(|error| SwapError::Platform { cell, error })?;
        undo.templates.push((module, TlsImage::of(before)));
        Ok(plan)
    }

    /// Writes `module` into the new version's TLS GOT words (recorded in `undo`).
    fn point_tls_slots(&self, p: &Pair, module: u64, undo: &mut Undo) -> Result<(), SwapError> {
        let cell = self.name_of(p.new);
        let Some(mapped) = self.mapped.get(&p.new) else {
            return Err(SwapError::NoSuchCell(p.new));
        };
        let platform_err = |error| SwapError::Platform {
            cell: cell.clone(),
            error,
        };
        let unwritable = |SlotOutside { slot }| SwapError::UnwritableSlot {
            cell: cell.clone(),
            slot,
        };
        let window = mapped
            .mapping
            .open_relro(&self.platform)
            .map_err(platform_err)?;
        for slot in &mapped.tls_slots {
            let value = window.load(*slot).map_err(unwritable)?;
            undo.slots.push(SlotValue { slot: *slot, value });
            window.store(*slot, module).map_err(unwritable)?;
        }
        window.close().map_err(platform_err)
    }

    /// After the commit: the new version owns the module it took over, the old one none, and the
    /// module the new version was loaded with goes. The old version stays mapped (it is lent)
    /// while threads have blocks: destructors it registered for them may still run its code.
    pub(super) fn finish_thread_locals(&mut self, p: &Pair, plan: TlsPlan) -> Option<TlsOutcome> {
        match plan {
            TlsPlan::Nothing => None,
            TlsPlan::Fresh { own, .. } => {
                if let Some(m) = self.mapped.get_mut(&p.new) {
                    m.tls_module = own;
                }
                if let Some(c) = self.registry.cell_mut(p.new) {
                    c.tls_module = own;
                }
                Some(TlsOutcome::Fresh)
            }
            TlsPlan::Carry { module, own, .. } => {
                if let Some(m) = self.mapped.get_mut(&p.new) {
                    m.tls_module = Some(module);
                }
                let blocks = self.platform.module_blocks(module);
                if let Some(m) = self.mapped.get_mut(&p.old) {
                    m.tls_module = None;
                    if blocks > 0 {
                        m.lent = true;
                    }
                }
                if let Some(c) = self.registry.cell_mut(p.new) {
                    c.tls_module = Some(module);
                }
                if let Some(c) = self.registry.cell_mut(p.old) {
                    c.tls_module = None;
                }
                if let Some(own) = own.filter(|own| *own != module) {
                    // SAFETY: the new version's code now reaches its thread-locals through
                    // `module` (its GOT words were rewritten before the commit), and no other cell
                    // binds to `own` (a `TLSGD` pair into the old version refused the swap), so
                    // no code uses `own` any more.
                    unsafe { self.platform.destroy_module(own) };
                }
                Some(TlsOutcome::Carried)
            }
        }
    }
}
