import type { Generated } from 'kysely';

/** Table types, as Kysely sees them. Times are epoch milliseconds; flags are 0/1. */
export interface RepositoryTable {
  id: Generated<number>;
  name: string;
  created_at: number;
  updated_at: number;
}

export interface BlobTable {
  digest: string;
  size: number;
  created_at: number;
}

/** A repository may serve a blob only when it links it (pushed or mounted into it). */
export interface RepositoryBlobTable {
  repository_id: number;
  digest: string;
  created_at: number;
}

export interface ManifestTable {
  repository_id: number;
  digest: string;
  media_type: string;
  artifact_type: string | null;
  subject_digest: string | null;
  annotations: string | null;
  size: number;
  content: Uint8Array;
  created_at: number;
}

/** Edges from a manifest to what it references: its blobs and, for an index, its child manifests. */
export interface ManifestReferenceTable {
  repository_id: number;
  parent_digest: string;
  child_digest: string;
  child_kind: 'blob' | 'manifest';
}

export interface TagTable {
  repository_id: number;
  name: string;
  digest: string;
  updated_at: number;
}

/** An upload session. The bytes received so far live in the blob store under the session id. */
export interface UploadTable {
  id: string;
  repository_id: number;
  offset: number;
  created_at: number;
  updated_at: number;
}

export interface Database {
  repositories: RepositoryTable;
  blobs: BlobTable;
  repository_blobs: RepositoryBlobTable;
  manifests: ManifestTable;
  manifest_references: ManifestReferenceTable;
  tags: TagTable;
  uploads: UploadTable;
}
