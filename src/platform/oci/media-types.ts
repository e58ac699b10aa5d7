export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Manifest media types we accept on PUT. */
export const SUPPORTED_MANIFEST_TYPES: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
]);

export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/**
 * Layers that by definition are not stored in the registry (Windows foreign layers and OCI
 * non-distributable layers); a manifest may list them without the blob being present.
 */
export function isNonDistributableLayer(mediaType: string): boolean {
  return (
    mediaType.startsWith('application/vnd.docker.image.rootfs.foreign.') ||
    mediaType.startsWith('application/vnd.oci.image.layer.nondistributable.')
  );
}
