// Autocast with a chosen dtype: tch exposes only CUDA autocast with libtorch's default dtype (fp16),
// so bf16 autocast (CUDA and CPU) goes through these three calls into at::autocast.
// Only c10's small enum headers are included; the declarations match libtorch_cpu's exports.
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace at::autocast {
bool is_autocast_enabled(c10::DeviceType device_type);
void set_autocast_enabled(c10::DeviceType device_type, bool enabled);
void set_autocast_dtype(c10::DeviceType device_type, c10::ScalarType dtype);
void clear_cache();
int increment_nesting();
int decrement_nesting();
}  // namespace at::autocast

static c10::DeviceType device_of(int cuda) { return cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU; }

extern "C" {
// Enables autocast on CPU (cuda = 0) or CUDA (cuda = 1) with bf16 (bf16 = 1) or fp16; returns the
// previous enabled state for rsim_autocast_exit.
int rsim_autocast_enter(int cuda, int bf16) {
    c10::DeviceType d = device_of(cuda);
    bool prev = at::autocast::is_autocast_enabled(d);
    at::autocast::set_autocast_dtype(d, bf16 ? c10::ScalarType::BFloat16 : c10::ScalarType::Half);
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::increment_nesting();
    return prev ? 1 : 0;
}

void rsim_autocast_exit(int cuda, int prev) {
    if (at::autocast::decrement_nesting() == 0) {
        at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device_of(cuda), prev != 0);
}
}
