//! Postings: the ascending ordinals of the series that have one `name="value"` pair.

/// A series' number inside the catalog: dense from 0, in registration order. Because a new
/// series always gets the largest ordinal yet, a postings list only ever grows at its end and
/// stays sorted without a tree.
pub(crate) type Ordinal = u32;

/// Where the postings of one value are: a single ordinal inline (most values of a
/// high-cardinality label, like `instance` or a request id, belong to one series), or a list
/// in the dictionary's [`Lists`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Postings {
    One(Ordinal),
    Many(u32),
}

/// The postings lists of one label's values that hold more than one ordinal.
#[derive(Debug, Default)]
pub(crate) struct Lists(Vec<Vec<Ordinal>>);

impl Lists {
    /// The ordinals `p` stands for, ascending.
    pub(crate) fn get<'a>(&'a self, p: &'a Postings) -> &'a [Ordinal] {
        match p {
            Postings::One(o) => std::slice::from_ref(o),
            Postings::Many(i) => self.0.get(*i as usize).map_or(&[], Vec::as_slice),
        }
    }

    /// Adds `ordinal`, larger than every ordinal in `p`, to `p`.
    pub(crate) fn push(&mut self, p: &mut Postings, ordinal: Ordinal) {
        match p {
            Postings::One(first) => {
                let at = self.0.len() as u32;
                self.0.push(vec![*first, ordinal]);
                *p = Postings::Many(at);
            }
            Postings::Many(i) => {
                if let Some(list) = self.0.get_mut(*i as usize) {
                    list.push(ordinal);
                }
            }
        }
    }
}

/// The ascending union of several ascending lists, without duplicates.
pub(crate) fn union(lists: &[&[Ordinal]]) -> Vec<Ordinal> {
    let mut out: Vec<Ordinal> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
    for l in lists {
        out.extend_from_slice(l);
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_grows_from_one_ordinal_to_a_list() {
        let mut lists = Lists::default();
        let mut p = Postings::One(3);
        assert_eq!(lists.get(&p), &[3]);
        lists.push(&mut p, 7);
        lists.push(&mut p, 9);
        assert_eq!(lists.get(&p), &[3, 7, 9]);
        let mut q = Postings::One(4);
        lists.push(&mut q, 8);
        assert_eq!(lists.get(&q), &[4, 8]);
        assert_eq!(lists.get(&p), &[3, 7, 9]);
        assert_eq!(
            union(&[lists.get(&p), lists.get(&q), &[3]]),
            vec![3, 4, 7, 8, 9]
        );
    }
}
