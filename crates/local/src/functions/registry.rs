//! The functions by name: roomcast's route functions and the broadcast function,
//! registered at start, and any more added by name (tests, other embedders).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use roomcast_core::App;

use super::broadcast;
use super::builtin::{self, Integration};
use super::function::LambdaFunction;

/// Functions by name. Cloning shares the registry.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: Arc<RwLock<HashMap<String, Arc<dyn LambdaFunction>>>>,
}

impl std::fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl FunctionRegistry {
    /// Adds (or replaces) a function.
    pub fn register(&self, name: impl Into<String>, function: Arc<dyn LambdaFunction>) {
        self.functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), function);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        self.functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Registers roomcast's three WebSocket functions (`connect`, `disconnect`,
    /// `message`), each run on `app` within `timeout`, and the broadcast function,
    /// run on `broadcast_app` (from the template's environment, or `app` too).
    pub(crate) fn register_builtins(
        &self,
        app: &Arc<App>,
        broadcast_app: &Arc<App>,
        timeout: Duration,
    ) {
        for integration in Integration::ALL {
            self.register(
                integration.binary(),
                Arc::new(builtin::RouteFunction {
                    app: Arc::clone(app),
                    integration,
                    timeout,
                }),
            );
        }
        for name in broadcast::NAMES {
            self.register(
                name,
                Arc::new(broadcast::BroadcastFunction::new(Arc::clone(broadcast_app))),
            );
        }
    }
}
