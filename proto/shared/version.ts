// The one version every LXR component reports, and where a controller
// listens by default: shared so lxrctl, the agent and the controller agree.
export const LXR_VERSION = '0.1.0';

export const DEFAULT_CONTROLLER_SOCKET = '/run/lxr/controller.sock';
