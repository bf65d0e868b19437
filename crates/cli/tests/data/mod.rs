//! End-to-end tests of the agent's `Data` collections and `Products`.
