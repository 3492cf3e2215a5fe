#version 450
#extension GL_GOOGLE_include_directive : require
// Matrix-vector product, portable version: shared-memory reduction.
#include "matvec.glsl"
