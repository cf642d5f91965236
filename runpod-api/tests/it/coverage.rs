//! The coverage walker: every operation of RunPod's OpenAPI document (`RPB_RUNPOD_OPENAPI`) has a
//! client method.
//!
//! The table maps each `operationId` to the method implementing it. Each mapped entry names the
//! method in a closure (`Client::list_pods`), so removing or renaming a method fails to compile
//! here; the test then fails for every operation of the document that is not mapped, for every
//! entry whose `operationId` the document no longer has, and for an operation without an
//! `operationId`.

use std::collections::{BTreeMap, BTreeSet};

use runpod_api::Client;
use serde_json::Value;
use test_support::contract::SPEC_ENV;

/// The method covering one operation; `reference` names it so the table cannot outlive it.
struct Coverage {
    name: &'static str,
    #[expect(dead_code, reason = "it exists to be compiled, not called")]
    reference: fn(),
}

macro_rules! method {
    ($operation:literal => $method:ident) => {
        (
            $operation,
            Coverage {
                name: stringify!($method),
                reference: || {
                    let _ = Client::$method;
                },
            },
        )
    };
}

fn coverage_table() -> Vec<(&'static str, Coverage)> {
    vec![
        // Pods.
        method!("listPods" => list_pods),
        method!("createPod" => create_pod),
        method!("getPod" => get_pod),
        method!("updatePod" => update_pod),
        method!("deletePod" => delete_pod),
        method!("podAction" => pod_action),
        method!("getPodLogs" => pod_logs),
        // Account.
        method!("getSshKeys" => ssh_keys),
        method!("updateSshKeys" => set_ssh_keys),
        // Templates.
        method!("listTemplates" => list_templates),
        method!("createTemplate" => create_template),
        method!("getTemplate" => get_template),
        method!("updateTemplate" => update_template),
        method!("deleteTemplate" => delete_template),
        // Network volumes.
        method!("listNetworkVolumes" => list_network_volumes),
        method!("createNetworkVolume" => create_network_volume),
        method!("getNetworkVolume" => get_network_volume),
        method!("updateNetworkVolume" => update_network_volume),
        method!("deleteNetworkVolume" => delete_network_volume),
        // Container registry credentials and ECR delegations.
        method!("listRegistries" => list_registries),
        method!("createRegistry" => create_registry),
        method!("getRegistry" => get_registry),
        method!("deleteRegistry" => delete_registry),
        method!("listDelegations" => list_ecr_delegations),
        method!("createDelegation" => create_ecr_delegation),
        method!("revokeDelegation" => revoke_ecr_delegation),
        // Catalogs.
        method!("listGpuTypes" => list_gpu_types),
        method!("getGpuType" => get_gpu_type),
        method!("listCpuTypes" => list_cpu_types),
        method!("getCpuType" => get_cpu_type),
        method!("listDataCenters" => list_data_centers),
        method!("getDataCenter" => get_data_center),
        method!("listPublicTemplates" => list_public_templates),
        // Billing.
        method!("listPodBilling" => pod_billing),
        method!("listBilling" => account_billing),
        method!("listServerlessBilling" => serverless_billing),
        method!("listEndpointBilling" => public_endpoint_billing),
        method!("listNetworkVolumeBilling" => network_volume_billing),
        method!("listClusterBilling" => cluster_billing),
        // Clusters.
        method!("listClusters" => list_clusters),
        method!("createCluster" => create_cluster),
        method!("getCluster" => get_cluster),
        method!("updateCluster" => update_cluster),
        method!("deleteCluster" => delete_cluster),
        method!("listClusterPods" => list_cluster_pods),
        // Serverless endpoints.
        method!("listEndpoints" => list_endpoints),
        method!("createEndpoint" => create_endpoint),
        method!("getEndpoint" => get_endpoint),
        method!("updateEndpoint" => update_endpoint),
        method!("deleteEndpoint" => delete_endpoint),
        method!("listEndpointWorkers" => list_endpoint_workers),
        method!("listEndpointReleases" => list_endpoint_releases),
        method!("getWorkerLogs" => worker_logs),
    ]
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(operationId or None, "METHOD /path")` of every operation in the document's `paths`.
fn operations(document: &Value) -> Vec<(Option<String>, String)> {
    let mut found = Vec::new();
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let id = operation["operationId"].as_str().map(str::to_owned);
                found.push((id, format!("{} {path}", method.to_uppercase())));
            }
        }
    }
    found
}

#[test]
fn every_operation_of_the_spec_has_a_client_method() {
    let path = std::env::var_os(SPEC_ENV)
        .unwrap_or_else(|| panic!("{SPEC_ENV} is not set: point it at the REST v2 OpenAPI JSON"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.to_string_lossy()));
    let document: Value = serde_json::from_str(&text).expect("the document is JSON");

    let mut table: BTreeMap<&str, Coverage> = BTreeMap::new();
    for (operation, coverage) in coverage_table() {
        assert!(
            table.insert(operation, coverage).is_none(),
            "{operation} is in the table twice"
        );
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut mapped = 0;
    for (id, route) in operations(&document) {
        let Some(id) = id else {
            problems.push(format!("{route}: the document gives it no operationId"));
            continue;
        };
        match table.get(id.as_str()) {
            Some(_) => mapped += 1,
            None => problems.push(format!("{id} ({route}) has no client method")),
        }
        seen.insert(id);
    }
    for (operation, coverage) in &table {
        if !seen.contains(*operation) {
            problems.push(format!(
                "{operation} (Client::{}) is not an operation of the document any more",
                coverage.name
            ));
        }
    }
    println!("{mapped} operations have a client method");
    assert!(
        problems.is_empty(),
        "the client does not cover the OpenAPI document:\n  {}",
        problems.join("\n  ")
    );
}
