/** The in-process pipeline lives with the server (its API runs models too); tools use it from there. */
export { loadLocalPipeline, type LocalPipeline } from '../../signaling-server/src/model/local-pipeline.js';
