//! A radix (patricia) trie of byte-string topics, each with a count.
//!
//! Prefix matching costs time linear in the part of the message that is
//! compared, whatever the number of topics (nng keeps a list and compares
//! every topic; nanomsg keeps a patricia trie too). Edges carry whole byte
//! strings, so a 1 MiB topic is one node, not a million. Nodes live in one
//! arena; every operation is a loop (no recursion, whatever the input), and
//! dropping the trie drops a `Vec`.

const ROOT: u32 = 0;

struct Node {
    /// The bytes on the edge from the parent to this node (empty at the root).
    label: Vec<u8>,
    /// Children, sorted by the first byte of their label (distinct).
    children: Vec<(u8, u32)>,
    /// How many times the topic ending here was inserted (0: no topic ends here).
    count: usize,
}

impl Node {
    fn empty() -> Node {
        Node {
            label: Vec::new(),
            children: Vec::new(),
            count: 0,
        }
    }
}

/// A set of topics with counts (a multiset); prefix matching.
pub struct TopicTrie {
    nodes: Vec<Node>,
    free: Vec<u32>,
    topics: usize,
    bytes: usize,
}

impl Default for TopicTrie {
    fn default() -> Self {
        TopicTrie {
            nodes: vec![Node::empty()],
            free: Vec::new(),
            topics: 0,
            bytes: 0,
        }
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

// `len` counts topics for the caps; nothing asks whether the trie is empty
#[allow(clippy::len_without_is_empty)]
impl TopicTrie {
    /// Distinct topics.
    pub fn len(&self) -> usize {
        self.topics
    }

    /// Summed length of the distinct topics.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn child(&self, n: u32, first: u8) -> Option<(usize, u32)> {
        let ch = &self.nodes[n as usize].children;
        ch.binary_search_by_key(&first, |&(k, _)| k)
            .ok()
            .map(|i| (i, ch[i].1))
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, n: u32) {
        self.nodes[n as usize] = Node::empty();
        self.free.push(n);
    }

    /// True when some topic is a prefix of `msg` (the empty topic matches
    /// everything). Compares each byte of `msg` at most once.
    pub fn matches(&self, msg: &[u8]) -> bool {
        let mut n = ROOT;
        let mut pos = 0;
        loop {
            if self.nodes[n as usize].count > 0 {
                return true;
            }
            let Some(&first) = msg.get(pos) else {
                return false;
            };
            let Some((_, c)) = self.child(n, first) else {
                return false;
            };
            let label = &self.nodes[c as usize].label;
            if !msg[pos..].starts_with(label) {
                return false;
            }
            pos += label.len();
            n = c;
        }
    }

    /// The node where exactly `topic` ends, and its parent.
    fn find(&self, topic: &[u8]) -> Option<(Option<u32>, u32)> {
        let (mut parent, mut n, mut pos) = (None, ROOT, 0);
        loop {
            let Some(&first) = topic.get(pos) else {
                return Some((parent, n));
            };
            let (_, c) = self.child(n, first)?;
            let label = &self.nodes[c as usize].label;
            if !topic[pos..].starts_with(label) {
                return None;
            }
            pos += label.len();
            parent = Some(n);
            n = c;
        }
    }

    /// How many times `topic` was inserted (and not removed).
    pub fn count(&self, topic: &[u8]) -> usize {
        self.find(topic)
            .map_or(0, |(_, n)| self.nodes[n as usize].count)
    }

    /// Inserts `topic` once more. True if it was not there before.
    pub fn insert(&mut self, topic: &[u8]) -> bool {
        let (mut n, mut pos) = (ROOT, 0);
        loop {
            let Some(&first) = topic.get(pos) else {
                let node = &mut self.nodes[n as usize];
                node.count += 1;
                let new = node.count == 1;
                if new {
                    self.topics += 1;
                    self.bytes += topic.len();
                }
                return new;
            };
            let Some((idx, c)) = self.child(n, first) else {
                let leaf = self.alloc(Node {
                    label: topic[pos..].to_vec(),
                    children: Vec::new(),
                    count: 1,
                });
                let ch = &mut self.nodes[n as usize].children;
                let at = ch.partition_point(|&(k, _)| k < first);
                ch.insert(at, (first, leaf));
                self.topics += 1;
                self.bytes += topic.len();
                return true;
            };
            let label = &self.nodes[c as usize].label;
            let common = common_prefix(label, &topic[pos..]);
            if common < label.len() {
                // split the edge: parent -> mid (label[..common]) -> c (the rest)
                let head = label[..common].to_vec();
                let next = label[common];
                self.nodes[c as usize].label.drain(..common);
                let mid = self.alloc(Node {
                    label: head,
                    children: vec![(next, c)],
                    count: 0,
                });
                self.nodes[n as usize].children[idx].1 = mid;
                n = mid;
            } else {
                n = c;
            }
            pos += common;
        }
    }

    /// Removes one insertion of `topic`. True if it was there.
    pub fn remove(&mut self, topic: &[u8]) -> bool {
        let Some((parent, n)) = self.find(topic) else {
            return false;
        };
        let node = &mut self.nodes[n as usize];
        if node.count == 0 {
            return false;
        }
        node.count -= 1;
        if node.count > 0 {
            return true;
        }
        self.topics -= 1;
        self.bytes -= topic.len();
        let Some(parent) = parent else {
            return true; // the root (the empty topic) stays
        };
        match self.nodes[n as usize].children.len() {
            0 => {
                let first = self.nodes[n as usize].label[0];
                let ch = &mut self.nodes[parent as usize].children;
                if let Ok(i) = ch.binary_search_by_key(&first, |&(k, _)| k) {
                    ch.remove(i);
                }
                self.release(n);
                if parent != ROOT {
                    self.merge_if_single(parent);
                }
            }
            1 => self.merge_if_single(n),
            _ => {}
        }
        true
    }

    /// Keeps the trie compressed: a node that ends no topic and has one
    /// child absorbs that child.
    fn merge_if_single(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        if node.count > 0 || node.children.len() != 1 {
            return;
        }
        let c = node.children[0].1;
        let child = std::mem::replace(&mut self.nodes[c as usize], Node::empty());
        self.free.push(c);
        let node = &mut self.nodes[n as usize];
        node.label.extend_from_slice(&child.label);
        node.children = child.children;
        node.count = child.count;
    }

    /// Every distinct topic (depth first, with an explicit stack).
    pub fn topics(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(self.topics);
        let mut buf = Vec::new();
        let mut stack = vec![(ROOT, 0usize)];
        while let Some((n, len)) = stack.pop() {
            let node = &self.nodes[n as usize];
            buf.truncate(len);
            buf.extend_from_slice(&node.label);
            if node.count > 0 {
                out.push(buf.clone());
            }
            stack.extend(node.children.iter().rev().map(|&(_, c)| (c, buf.len())));
        }
        out
    }

    /// Nodes in use (for tests of compression).
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(topics: &[Vec<u8>], msg: &[u8]) -> bool {
        topics.iter().any(|t| msg.starts_with(t))
    }

    #[test]
    fn empty_topic_matches_everything_and_nothing_matches_nothing() {
        let mut t = TopicTrie::default();
        assert!(!t.matches(b""));
        assert!(!t.matches(b"abc"));
        assert!(t.insert(b""));
        assert!(t.matches(b""));
        assert!(t.matches(b"abc"));
        assert!(t.remove(b""));
        assert!(!t.matches(b"abc"));
        assert!(!t.remove(b""));
    }

    #[test]
    fn prefixes_split_and_merge() {
        let mut t = TopicTrie::default();
        for s in ["abc", "abd", "ab", "b", "abcdef"] {
            assert!(t.insert(s.as_bytes()));
        }
        assert!(!t.insert(b"ab"), "second insert only counts");
        assert_eq!(t.len(), 5);
        assert!(t.matches(b"abx"));
        assert!(t.matches(b"abcz"));
        assert!(!t.matches(b"a"));
        assert!(!t.matches(b"c"));
        assert!(t.remove(b"ab"));
        assert!(t.matches(b"abx"), "still counted once");
        assert!(t.remove(b"ab"));
        assert!(!t.matches(b"abx"));
        assert!(t.matches(b"abd"));
        assert!(!t.remove(b"a"), "a prefix of topics is not a topic");
        for s in ["abc", "abd", "b", "abcdef"] {
            assert!(t.remove(s.as_bytes()));
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.bytes(), 0);
        assert_eq!(t.live_nodes(), 1, "only the root is left");
    }

    #[test]
    fn agrees_with_a_naive_list_on_random_sets() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut t = TopicTrie::default();
        let mut list: Vec<Vec<u8>> = Vec::new();
        for _ in 0..4000 {
            let len = rng.usize(0..5);
            let topic: Vec<u8> = (0..len).map(|_| rng.u8(b'a'..b'd')).collect();
            if rng.bool() {
                let fresh = !list.contains(&topic);
                assert_eq!(t.insert(&topic), fresh);
                list.push(topic);
            } else if let Some(i) = list.iter().position(|x| *x == topic) {
                list.swap_remove(i);
                assert!(t.remove(&topic));
            } else {
                assert!(!t.remove(&topic));
            }
            let msg: Vec<u8> = (0..rng.usize(0..7)).map(|_| rng.u8(b'a'..b'd')).collect();
            assert_eq!(t.matches(&msg), naive(&list, &msg), "{list:?} {msg:?}");
        }
        let mut mine = t.topics();
        let mut want = list.clone();
        want.sort();
        want.dedup();
        mine.sort();
        assert_eq!(mine, want);
        for x in &list {
            assert!(t.remove(x));
        }
        assert_eq!(t.live_nodes(), 1);
    }

    #[test]
    fn deep_nesting_is_iterative() {
        // "a", "aa", "aaa", ... : a chain as deep as the longest topic
        let mut t = TopicTrie::default();
        let long = vec![b'a'; 5_000];
        for n in 1..=long.len() {
            t.insert(&long[..n]);
        }
        assert!(t.matches(&long));
        assert!(!t.matches(b"b"));
        assert_eq!(t.topics().len(), 5_000);
        drop(t);
    }
}
