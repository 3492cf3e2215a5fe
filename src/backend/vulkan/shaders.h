/*
 * The compute shaders (shaders/NAME.comp), compiled to SPIR-V at build time
 * and embedded by shaders/embed.sh into build/gen/vk_shaders.c, so the
 * library needs no shader files at run time.
 */
#ifndef LLMS_VK_SHADERS_H
#define LLMS_VK_SHADERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vk_shader_blob {
    const char *name;     /* the .comp file's base name */
    const uint32_t *code;
    size_t size;          /* bytes */
} vk_shader_blob;

extern const vk_shader_blob vk_shader_blobs[];
extern const unsigned vk_shader_blob_count;

#endif
