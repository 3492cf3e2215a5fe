// Shared helpers for the compute shaders. Weights are bound as raw 32-bit
// words because GGUF blocks (18, 34, 210 bytes...) are not 4-byte aligned:
// fields are assembled from bytes, which every Vulkan 1.2 device supports
// without the 8/16-bit storage features.

// Flattened 2-D dispatch: one grid dimension is capped at 65535 groups on
// the minimum-spec device, so large element counts spill into y.
uint flat_id(uint local_size) {
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * local_size;
}
