//! SUB's subscriptions (sp-protocols `pubsub/trie.rs`): any sequence of
//! subscribe, unsubscribe (duplicates included) and match against a list of
//! prefixes.

use sp_protocols::pubsub::FuzzTopicTrie as TopicTrie;

use crate::input::Input;

/// Fuzz target `sub_trie`: operations on the trie, each checked against a
/// Vec-of-prefixes model.
pub fn sub_trie(data: &[u8]) {
    let mut inp = Input::new(data);
    // a small alphabet makes shared prefixes (splits and merges) likely
    let alphabet = inp.u8() % 4;
    let bytes = |b: &[u8]| -> Vec<u8> {
        match alphabet {
            0 => b.to_vec(),
            n => b.iter().map(|x| b'a' + x % (n + 1)).collect(),
        }
    };
    let mut trie = TopicTrie::default();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut ops = 0;
    while !inp.is_empty() && ops < 512 {
        ops += 1;
        let op = inp.u8();
        let arg = bytes(inp.take((op >> 2) as usize % 24));
        match op & 3 {
            0 => {
                let fresh = !model.contains(&arg);
                assert_eq!(trie.insert(&arg), fresh, "insert {arg:?}");
                model.push(arg);
            }
            1 => {
                let had = model.iter().position(|t| *t == arg);
                assert_eq!(trie.remove(&arg), had.is_some(), "remove {arg:?}");
                if let Some(i) = had {
                    model.swap_remove(i);
                }
            }
            2 => {
                let want = model.iter().any(|t| arg.starts_with(t));
                assert_eq!(trie.matches(&arg), want, "match {arg:?} with {model:?}");
            }
            _ => {
                let n = model.iter().filter(|t| **t == arg).count();
                assert_eq!(trie.count(&arg), n, "count {arg:?}");
            }
        }
    }
    let mut distinct = model.clone();
    distinct.sort();
    distinct.dedup();
    let mut topics = trie.topics();
    topics.sort();
    assert_eq!(topics, distinct);
    assert_eq!(trie.len(), distinct.len());
    assert_eq!(trie.bytes(), distinct.iter().map(Vec::len).sum::<usize>());
    for t in &model {
        assert!(trie.remove(t));
    }
    assert_eq!(trie.len(), 0);
    assert_eq!(trie.bytes(), 0);
    assert!(!trie.matches(b"anything") && !trie.matches(b""));
}
