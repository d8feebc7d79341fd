package file

// RunPusher is runPusher for the external test package's TestMain.
func RunPusher() int { return runPusher() }

// PusherEnv names the variable that makes the test binary a pusher child.
const PusherEnv = pusherCacheEnv
