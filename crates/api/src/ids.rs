//! Name-based ids of the reference: instance ids from `itemId:subjectId:index` and runtime ids
//! from `type-nodeId`, both UUID v3 in the OID namespace.

use uuid::Uuid;

/// The namespace both ids live in (`6ba7b812-9dad-11d1-80b4-00c04fd430c8`).
pub const ID_NAMESPACE: Uuid = Uuid::NAMESPACE_OID;

/// The id of an instance: UUID v3 of `"<itemId>:<subjectId>:<index>"`.
pub fn instance_id(item_id: &str, subject_id: &str, index: u64) -> Uuid {
    Uuid::new_v3(
        &ID_NAMESPACE,
        format!("{item_id}:{subject_id}:{index}").as_bytes(),
    )
}

/// The id of a runtime on a node: UUID v3 of `"<runtimeType>-<nodeId>"`.
pub fn runtime_id(runtime_type: &str, node_id: &str) -> Uuid {
    Uuid::new_v3(
        &ID_NAMESPACE,
        format!("{runtime_type}-{node_id}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_id_matches_the_reference_test_vector() {
        assert_eq!(
            runtime_id("boot", "node1").to_string(),
            "ddb944db-faba-39d9-9982-8be46f10293b"
        );
    }

    #[test]
    fn instance_id_is_a_v3_uuid_of_item_subject_and_index() {
        let id = instance_id("item1", "subject1", 0);
        assert_eq!(id.get_version_num(), 3);
        assert_eq!(id, Uuid::new_v3(&Uuid::NAMESPACE_OID, b"item1:subject1:0"));
        assert_ne!(id, instance_id("item1", "subject1", 1));
        assert_eq!(
            ID_NAMESPACE.to_string(),
            "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
        );
    }
}
