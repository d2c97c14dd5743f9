//! Whether two rules can match the same call: the conjunction of their conditions is
//! satisfiable. Arguments are independent, so each argument is solved on its own.

use super::{Condition, Op};

/// Whether some argument values satisfy every condition, each value `width`-bit.
pub fn satisfiable(conds: &[&Condition], is_64bit: bool) -> bool {
    let max = if is_64bit {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    (0..6u8).all(|i| {
        let on: Vec<&Condition> = conds.iter().copied().filter(|c| c.index == i).collect();
        on.is_empty() || arg_satisfiable(&on, max)
    })
}

fn arg_satisfiable(conds: &[&Condition], max: u64) -> bool {
    let (mut lo, mut hi) = (0u64, max);
    let (mut mask, mut datum) = (0u64, 0u64);
    let mut excluded = Vec::new();
    for c in conds {
        let (v, w) = (c.value & max, c.value_two & c.value & max);
        match c.op {
            Op::Eq => {
                lo = lo.max(v);
                hi = hi.min(v);
            }
            Op::Ne => excluded.push(v),
            Op::Lt => match v.checked_sub(1) {
                Some(h) => hi = hi.min(h),
                None => return false,
            },
            Op::Le => hi = hi.min(v),
            Op::Gt => {
                if v == max {
                    return false;
                }
                lo = lo.max(v + 1);
            }
            Op::Ge => lo = lo.max(v),
            Op::MaskedEq => {
                if (datum & v) != (w & mask) {
                    return false;
                }
                mask |= v;
                datum |= w;
            }
        }
    }
    // Walk the values that pass the masks upwards from `lo`; at most one per excluded value.
    let mut from = lo;
    loop {
        let Some(x) = next_match(from, mask, datum) else {
            return false;
        };
        if x > hi {
            return false;
        }
        if !excluded.contains(&x) {
            return true;
        }
        match x.checked_add(1) {
            Some(n) => from = n,
            None => return false,
        }
    }
}

/// The smallest `x >= lo` with `x & mask == datum` (`datum` within `mask`).
pub fn next_match(lo: u64, mask: u64, datum: u64) -> Option<u64> {
    if lo & mask == datum {
        return Some(lo);
    }
    // x keeps lo's bits above some bit p, sets p where lo has 0, and is minimal below p;
    // the lowest such p gives the smallest x.
    for p in 0..64 {
        let bit = 1u64 << p;
        if lo & bit != 0 || (mask & bit != 0 && datum & bit == 0) {
            continue;
        }
        let above = if p == 63 { 0 } else { !((bit << 1) - 1) };
        if lo & above & mask != datum & above {
            continue;
        }
        return Some((lo & above) | bit | (datum & (bit - 1)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(index: u8, op: Op, value: u64, value_two: u64) -> Condition {
        Condition {
            index,
            op,
            value,
            value_two,
        }
    }

    #[test]
    fn literal_cases() {
        let eq5 = c(0, Op::Eq, 5, 0);
        let ne5 = c(0, Op::Ne, 5, 0);
        let gt4 = c(0, Op::Gt, 4, 0);
        let lt5 = c(0, Op::Lt, 5, 0);
        let other = c(1, Op::Eq, 9, 0);
        assert!(!satisfiable(&[&eq5, &ne5], true));
        assert!(satisfiable(&[&eq5, &gt4], true));
        assert!(!satisfiable(&[&gt4, &lt5], true));
        assert!(satisfiable(&[&eq5, &other], true));
        let hi = c(0, Op::Eq, (1 << 32) | 5, 0);
        assert!(!satisfiable(&[&hi, &eq5], true));
        assert!(
            satisfiable(&[&hi, &eq5], false),
            "only low halves on 32-bit"
        );
        let m = c(0, Op::MaskedEq, 0xf0, 0x30);
        let m2 = c(0, Op::MaskedEq, 0x0f, 0x03);
        let eq33 = c(0, Op::Eq, 0x33, 0);
        let ne33 = c(0, Op::Ne, 0x33, 0);
        assert!(satisfiable(&[&m, &m2, &eq33], true));
        assert!(satisfiable(&[&m, &m2, &ne33], true), "0x133 and more");
        let m3 = c(0, Op::MaskedEq, u64::MAX, 0x33);
        assert!(!satisfiable(&[&m3, &ne33], true));
        // Datum bits outside the mask do not count.
        let outside = c(0, Op::MaskedEq, 0x0f, 0x13);
        assert!(satisfiable(&[&outside, &c(0, Op::Eq, 0x03, 0)], true));
        assert!(!satisfiable(&[&c(0, Op::Lt, 0, 0)], true));
        assert!(!satisfiable(&[&c(0, Op::Gt, u64::MAX, 0)], true));
        assert!(!satisfiable(
            &[&c(0, Op::Gt, u64::from(u32::MAX), 0)],
            false
        ));
    }

    proptest! {
        #[test]
        fn next_match_is_the_smallest(lo in any::<u16>(), mask in any::<u16>(), datum in any::<u16>()) {
            let (lo, mask, datum) = (u64::from(lo), u64::from(mask) | !0xffff, u64::from(datum & mask));
            let want = (lo..=0xffff).find(|x| x & mask == datum);
            prop_assert_eq!(next_match(lo, mask, datum), want);
        }

        #[test]
        fn agrees_with_brute_force(ops in proptest::collection::vec((0u8..7, 0u64..16, 0u64..16), 1..5)) {
            let all = [Op::Ne, Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt, Op::MaskedEq];
            let conds: Vec<Condition> = ops.iter().map(|&(o, v, w)| c(0, all[usize::from(o)], v, w)).collect();
            let refs: Vec<&Condition> = conds.iter().collect();
            // Values of 16 and up behave like 16 for every condition here but the masks,
            // whose bits stop at 15: 16..64 covers them.
            let brute = (0u64..64).any(|x| conds.iter().all(|c| c.holds(x, super::super::Arch::X86_64)));
            prop_assert_eq!(satisfiable(&refs, true), brute);
        }
    }
}
