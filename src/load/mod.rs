//! Load client (owned by the load-client work item).
