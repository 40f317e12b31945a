//! The one permission API: publish, and relro write windows that check every store and close
//! themselves.

use crate::mapping::permissions::SlotOutside;
use crate::mapping::Mapping;
use crate::platform::{PlatformError, Protection};
use crate::region::{Region, Regions, Span};
use crate::testing::{HeapPlatform, PAGE};

/// One page per region.
fn regions() -> Regions {
    let page = |i: usize| Span {
        offset: i * PAGE,
        len: PAGE,
    };
    Regions {
        text: page(0),
        read_only: page(1),
        relro: page(2),
        data: page(3),
    }
}

#[test]
fn publish_gives_each_region_its_final_protection_in_two_calls() {
    let memory = HeapPlatform::default();
    let mapping = Mapping::new(&memory, regions()).unwrap();
    mapping.publish(&memory).unwrap();
    let at = |r| memory.protection(mapping.region(r).start);
    assert_eq!(at(Region::Text), Some(Protection::ReadExecute));
    assert_eq!(at(Region::ReadOnly), Some(Protection::ReadOnly));
    assert_eq!(at(Region::RelRo), Some(Protection::ReadOnly));
    assert_eq!(at(Region::Data), Some(Protection::ReadWrite));
    assert_eq!(memory.protections().len(), 2);
    // SAFETY: nothing uses the mapping.
    unsafe { mapping.unmap(&memory) };
}

#[test]
fn a_relro_window_stores_only_aligned_words_of_the_relro_region_and_closes_itself() {
    let memory = HeapPlatform::default();
    let mapping = Mapping::new(&memory, regions()).unwrap();
    mapping.publish(&memory).unwrap();
    let relro = mapping.region(Region::RelRo).start;
    let data = mapping.region(Region::Data).start;
    {
        let window = mapping.open_relro(&memory).unwrap();
        assert_eq!(memory.protection(relro), Some(Protection::ReadWrite));
        assert_eq!(
            memory.protection(relro - 1),
            Some(Protection::ReadOnly),
            "read-only data"
        );
        window.store(relro + 8, 0xabcd).unwrap();
        assert_eq!(window.load(relro + 8), Ok(0xabcd));
        for outside in [relro + 4, relro + PAGE as u64, relro - 8, data, 0] {
            assert_eq!(window.store(outside, 1), Err(SlotOutside { slot: outside }));
            assert!(!window.contains(outside));
        }
        // Dropped without `close`: it closes itself.
    }
    assert_eq!(memory.protection(relro), Some(Protection::ReadOnly));
    assert_eq!(mapping.load_slot(relro + 8), Some(0xabcd));

    // Data slots are stored directly, and only in the data region.
    mapping.store_data_slot(data + 16, 7).unwrap();
    assert_eq!(mapping.load_slot(data + 16), Some(7));
    assert_eq!(
        mapping.store_data_slot(relro, 7),
        Err(SlotOutside { slot: relro })
    );
    assert_eq!(mapping.slot_region(relro), Some(Region::RelRo));
    assert_eq!(mapping.slot_region(data + 8), Some(Region::Data));
    assert_eq!(
        mapping.slot_region(mapping.region(Region::Text).start),
        None
    );

    // A window whose closing fails says so; the region stays writable, never executable.
    let window = mapping.open_relro(&memory).unwrap();
    memory.fail_call(Some(0));
    assert!(matches!(window.close(), Err(PlatformError::Protect { .. })));
    memory.fail_call(None);
    assert_eq!(memory.protection(relro), Some(Protection::ReadWrite));
    // SAFETY: nothing uses the mapping.
    unsafe { mapping.unmap(&memory) };
    assert_eq!(memory.live(), (0, 0));
}
