//! The order of a stream's member nodes in its broadcast tree, when the nodes' uplink
//! capacities are known: the nodes that can feed children first, so that the ones that cannot
//! end up in the last tier, where nobody depends on them. Pure.
//!
//! [`crate::spaces::tree::Tree`] fills tiers in the order it is given and gives the last tier no
//! children. [`capacity_order`] sorts the member nodes by capacity, highest first, keeping the
//! log's order among equals, so every node that knows the same capacities computes the same
//! tree. (How the capacities reach every node is the stream protocol's to fix.)

use northstar_protocol::Did;

/// The member nodes, highest capacity first, the given (log) order kept among equals.
pub fn capacity_order(nodes: Vec<(Did, u32)>) -> Vec<Did> {
    let mut nodes = nodes;
    // A stable sort: equal capacities keep the log's order.
    nodes.sort_by_key(|(_, capacity)| std::cmp::Reverse(*capacity));
    nodes.into_iter().map(|(did, _)| did).collect()
}

#[cfg(test)]
mod tests {
    use northstar_protocol::Keypair;

    use super::*;

    #[test]
    fn high_capacity_first_and_the_log_order_among_equals() {
        let did = |b: u8| Keypair::from_seed(&[b; 32]).did().clone();
        let order = capacity_order(vec![
            (did(1), 10),
            (did(2), 100),
            (did(3), 10),
            (did(4), 100),
        ]);
        assert_eq!(order, vec![did(2), did(4), did(1), did(3)]);
    }
}
