//! The trie against a list of prefixes: any sequence of subscribe and
//! unsubscribe (duplicates included, the trie counts them) and matches
//! agrees with the list, and the trie stays compressed.

use proptest::prelude::*;

use super::TopicTrie;

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<u8>),
    Remove(Vec<u8>),
    Match(Vec<u8>),
}

/// Topics over a three-letter alphabet, so prefixes are shared and edges
/// split and merge; the empty topic included.
fn topic(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => topic(5).prop_map(Op::Insert),
        2 => topic(5).prop_map(Op::Remove),
        3 => topic(8).prop_map(Op::Match),
    ]
}

proptest! {
    #[test]
    fn trie_agrees_with_a_list_of_prefixes(ops in proptest::collection::vec(op(), 0..120)) {
        let mut t = TopicTrie::default();
        let mut list: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(x) => {
                    let fresh = !list.contains(&x);
                    prop_assert_eq!(t.insert(&x), fresh);
                    list.push(x);
                }
                Op::Remove(x) => {
                    let at = list.iter().position(|y| *y == x);
                    prop_assert_eq!(t.remove(&x), at.is_some());
                    if let Some(i) = at {
                        list.swap_remove(i);
                    }
                }
                Op::Match(m) => {
                    prop_assert_eq!(t.matches(&m), list.iter().any(|x| m.starts_with(x)));
                }
            }
            let mut distinct = list.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(t.len(), distinct.len());
            prop_assert_eq!(t.bytes(), distinct.iter().map(Vec::len).sum::<usize>());
            for d in &distinct {
                prop_assert_eq!(t.count(d), list.iter().filter(|x| *x == d).count());
            }
            let mut topics = t.topics();
            topics.sort();
            // compressed: every node ends a topic or branches
            prop_assert!(t.live_nodes() <= 2 * distinct.len() + 1);
            prop_assert_eq!(topics, distinct);
        }
        // unsubscribing everything leaves only the root: nothing leaks
        for x in &list {
            prop_assert!(t.remove(x));
        }
        prop_assert_eq!(t.live_nodes(), 1);
    }
}
